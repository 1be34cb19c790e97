"""Bulk API 2.0 query jobs for the simulator: job registry, state machine and CSV results.

What the server speaks (``{ver}`` any ``NN.N``; every call is an API call, so faults apply):

* ``POST /services/data/v{ver}/jobs/query`` ``{"operation": "query"|"queryAll", "query": SOQL,
  "contentType": "CSV", "columnDelimiter": ..., "lineEnding": ...}`` -> 200 JobInfo in state
  ``UploadComplete``. The SOQL is validated synchronously, as Salesforce does: a bad query is a
  400 ``[{"errorCode": "API_ERROR", "message": <the REST error text, e.g. "...No such column
  'X' on entity 'Y'...">}]`` and no job is created. ``COUNT()`` is refused the same way (Bulk
  queries do not support aggregates).
* ``GET .../jobs/query/{id}`` -> JobInfo. Each GET that reaches the job (not one refused by an
  injected fault) is a poll: the first reports ``InProgress``,
  poll number ``Faults.bulk_polls_until_complete`` (default 2; <= 1 means the first) reports
  ``JobComplete`` - or ``Failed`` with ``errorMessage`` when the job was created while
  ``Faults.bulk_job_failure`` was set, or when the query no longer validates (describe drift
  removed a field meanwhile). The result snapshot is taken at that poll.
* ``GET .../jobs/query/{id}/results[?locator=L][&maxRecords=N]`` -> ``text/csv`` page with a
  header row, ``Sforce-Locator`` (next page, or the string ``null``) and
  ``Sforce-NumberOfRecords``. Locators are base64 of the row offset (``MTAwMDA`` = 10000, as
  Salesforce's look), stable and re-readable as long as the job exists. Without ``maxRecords``
  a page holds up to :attr:`BulkJobs.default_max_records` rows; a job without rows answers the
  header row alone. Before ``JobComplete``:
  412 ``JOB_NOT_COMPLETE``.
* ``PATCH .../jobs/query/{id}`` ``{"state": "Aborted"}`` -> JobInfo (only before completion,
  else 400 ``API_ERROR``); ``DELETE .../jobs/query/{id}`` -> 204 (only once ``JobComplete``,
  ``Failed`` or ``Aborted``, else 400 ``API_ERROR`` "...the job is not terminated").
* ``GET .../jobs/query`` -> ``{"done": true, "records": [JobInfo...], "nextRecordsUrl": null}``.

CSV like Salesforce's: RFC 4180 quoting where needed (``csv.QUOTE_MINIMAL``), null -> empty
field, booleans ``true``/``false``, datetimes ``2026-11-20T10:15:00.000Z``, dates
``2026-11-20``, numbers as in the REST JSON (``1242.56``, ``100.0``; never an exponent).
Columns are the catalog spelling of the selected fields, in SELECT order (API >= 50.0).

Memory: a finished job keeps its rows in memory as CSV lines (this is a test tool). At most
:attr:`BulkJobs.max_jobs` jobs are kept and their results may total at most
:attr:`BulkJobs.max_result_bytes` (characters); past either, the oldest finished jobs are
forgotten whole (404 afterwards), as Salesforce deletes old jobs.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import secrets
import string
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tally.catalog import Field
from tally_local.sfsim.faults import plain_number
from tally_local.sfsim.soql import format_datetime

UPLOAD_COMPLETE, IN_PROGRESS, JOB_COMPLETE = "UploadComplete", "InProgress", "JobComplete"
FAILED, ABORTED = "Failed", "Aborted"
TERMINAL = (JOB_COMPLETE, FAILED, ABORTED)
DELIMITERS = {"BACKQUOTE": "`", "CARET": "^", "COMMA": ",", "PIPE": "|", "SEMICOLON": ";", "TAB": "\t"}
LINE_ENDINGS = {"LF": "\n", "CRLF": "\r\n"}
_STATE_NAMES = {
    UPLOAD_COMPLETE: "UPLOAD_COMPLETE",
    IN_PROGRESS: "IN_PROGRESS",
    FAILED: "FAILED",
    ABORTED: "ABORTED",
}


class BulkError(Exception):
    """A request the Bulk API refuses: HTTP ``status`` with Salesforce's ``[{errorCode, message}]``."""

    def __init__(self, status: int, error_code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.error_code, self.message = status, error_code, message


@dataclass
class BulkJob:
    id: str
    operation: str  # query | queryAll
    object: str
    query: str
    api_version: str
    column_delimiter: str
    line_ending: str
    created_by: str
    polls_until_complete: int
    failure: str | None = None  # from Faults.bulk_job_failure when created
    created: str = field(default_factory=lambda: format_datetime(datetime.now(UTC)))
    modstamp: str = ""
    state: str = UPLOAD_COMPLETE
    polls: int = 0
    error_message: str | None = None
    header: str = ""
    lines: list[str] = field(default_factory=list)
    size: int = 0
    processing_ms: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self.modstamp = self.modstamp or self.created

    def info(self, *, detail: bool = True) -> dict[str, Any]:
        """JobInfo as the API returns it (``detail``: the GET-job form with counters)."""
        doc: dict[str, Any] = {
            "id": self.id,
            "operation": self.operation,
            "object": self.object,
            "createdById": self.created_by,
            "createdDate": self.created,
            "systemModstamp": self.modstamp,
            "state": self.state,
            "concurrencyMode": "Parallel",
            "contentType": "CSV",
            "apiVersion": float(self.api_version),
        }
        if detail:
            doc["jobType"] = "V2Query"
        doc["lineEnding"] = self.line_ending
        doc["columnDelimiter"] = self.column_delimiter
        if detail:
            doc.update(
                numberRecordsProcessed=len(self.lines) if self.state == JOB_COMPLETE else 0,
                retries=0,
                totalProcessingTime=self.processing_ms,
                isPkChunkingSupported=True,
            )
            if self.error_message is not None:
                doc["errorMessage"] = self.error_message
        return doc


# A query runner: the job -> (selected fields, rows of wire values); raises ``BulkError`` if
# the query no longer validates (the job then fails).
Runner = Callable[[BulkJob], tuple[Sequence[Field], Iterable[Sequence[object]]]]


class BulkJobs:
    """The org's query jobs (thread-safe). Jobs outlive sessions, like Salesforce's."""

    max_jobs = 1000
    max_result_bytes = 256 * 1024 * 1024
    default_max_records = 1_000_000

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: OrderedDict[str, BulkJob] = OrderedDict()

    def create(self, **kwargs: Any) -> BulkJob:
        job = BulkJob(
            id="750" + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(15)),
            **kwargs,
        )
        with self._lock:
            self._jobs[job.id] = job
            self._evict()
        return job

    def get(self, job_id: str) -> BulkJob:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise BulkError(404, "NOT_FOUND", "The requested resource does not exist")
        return job

    def all(self) -> list[BulkJob]:
        with self._lock:
            return list(self._jobs.values())

    def poll(self, job_id: str, run: Runner) -> BulkJob:
        """One GET of the job: advance the state machine; run the query when it completes."""
        job = self.get(job_id)
        with job.lock:
            if job.state in TERMINAL:
                return job
            job.polls += 1
            if job.polls < max(1, job.polls_until_complete):
                job.state = IN_PROGRESS
            elif job.failure is not None:
                job.state, job.error_message = FAILED, job.failure
            else:
                started = time.monotonic()
                try:
                    fields, rows = run(job)
                except BulkError as exc:
                    job.state, job.error_message = FAILED, exc.message
                else:
                    job.header, job.lines = csv_lines(fields, rows, job.column_delimiter, job.line_ending)
                    job.size = len(job.header) + sum(map(len, job.lines))
                    job.state = JOB_COMPLETE
                job.processing_ms = int((time.monotonic() - started) * 1000)
            job.modstamp = format_datetime(datetime.now(UTC))
        if job.state in TERMINAL:
            with self._lock:
                self._evict(keep=job.id)
        return job

    def abort(self, job_id: str) -> BulkJob:
        job = self.get(job_id)
        with job.lock:
            if job.state in TERMINAL:
                raise BulkError(
                    400, "API_ERROR", f"Job {job.id} is already in state {job.state} and cannot be aborted"
                )
            job.state = ABORTED
            job.modstamp = format_datetime(datetime.now(UTC))
        return job

    def delete(self, job_id: str) -> None:
        job = self.get(job_id)
        with job.lock:
            if job.state not in TERMINAL:
                raise BulkError(
                    400,
                    "API_ERROR",
                    "Error encountered when deleting the job because the job is not terminated",
                )
        with self._lock:
            self._jobs.pop(job_id, None)

    def page(self, job_id: str, locator: str | None, max_records: str | None) -> tuple[str, int, str]:
        """``(csv_text, number_of_records, next_locator_or_"null")`` of a completed job."""
        job = self.get(job_id)
        if job.state != JOB_COMPLETE:
            current = _STATE_NAMES.get(job.state, job.state)
            raise BulkError(
                412,
                "JOB_NOT_COMPLETE",
                "can only download query results of successfully completed bulk job with status: "
                f"JOB_COMPLETE. Current status: {current}",
            )
        if max_records is None or max_records == "":
            limit = self.default_max_records
        elif max_records.isdigit() and int(max_records) > 0:
            limit = int(max_records)
        else:
            raise BulkError(
                400, "API_ERROR", f"Invalid maxRecords: {max_records!r}; expected a positive integer"
            )
        offset = decode_locator(locator, len(job.lines))
        rows = job.lines[offset : offset + limit]
        end = offset + len(rows)
        next_locator = encode_locator(end) if end < len(job.lines) else "null"
        return job.header + "".join(rows), len(rows), next_locator

    def _evict(self, keep: str | None = None) -> None:
        """Forget the oldest finished jobs past the caps (caller holds ``_lock``)."""
        total = sum(j.size for j in self._jobs.values())
        for job_id in list(self._jobs):
            if len(self._jobs) <= self.max_jobs and total <= self.max_result_bytes:
                break
            job = self._jobs[job_id]
            if job_id == keep or job.state not in TERMINAL:
                continue
            total -= job.size
            del self._jobs[job_id]


def encode_locator(offset: int) -> str:
    return base64.b64encode(str(offset).encode()).decode().rstrip("=")


def decode_locator(locator: str | None, total: int) -> int:
    if not locator:
        return 0
    try:
        text = base64.b64decode(locator + "=" * (-len(locator) % 4), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        text = ""
    if not text.isdigit() or int(text) > total:
        raise BulkError(400, "INVALID_LOCATOR", f"Invalid locator: {locator}")
    return int(text)


def csv_value(f: Field, value: object) -> object:
    """A wire (REST JSON) value as a Bulk API 2.0 CSV field."""
    if value is None:
        return ""
    if f.type == "bool":
        return "true" if value else "false"
    if f.type == "datetime" and isinstance(value, str) and value.endswith("+0000"):
        return value[:-5] + "Z"
    if (
        f.type in ("decimal", "double", "int")
        and isinstance(value, int | float)
        and not isinstance(value, bool)
    ):
        return plain_number(int(value) if f.type == "int" else value)
    return value


def csv_lines(
    fields: Sequence[Field], rows: Iterable[Sequence[object]], delimiter: str, line_ending: str
) -> tuple[str, list[str]]:
    """``(header_line, [record_line, ...])``, each line ending with the job's line ending."""
    buffer = io.StringIO()
    writer = csv.writer(
        buffer,
        delimiter=DELIMITERS[delimiter],
        lineterminator=LINE_ENDINGS[line_ending],
        quoting=csv.QUOTE_MINIMAL,
    )
    writer.writerow([f.name for f in fields])
    header = buffer.getvalue()
    lines = []
    for row in rows:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow([csv_value(f, v) for f, v in zip(fields, row, strict=True)])
        lines.append(buffer.getvalue())
    return header, lines
