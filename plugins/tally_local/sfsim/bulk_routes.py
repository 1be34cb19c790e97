"""The simulator's Bulk API 2.0 query-job endpoints, on top of :mod:`tally_local.sfsim.bulk`.

Routes under ``/services/data/v{ver}/jobs/query`` (the API they speak is described in
:mod:`tally_local.sfsim.bulk`): list and create jobs, poll/abort/delete one job, read its CSV
results. A :class:`tally_local.sfsim.bulk.BulkError` raised anywhere below becomes the
Salesforce error response ``[{"errorCode": ..., "message": ...}]`` with its status.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tally import sfid
from tally.catalog import Field
from tally_local.sfsim import soql
from tally_local.sfsim.auth import USER_ID
from tally_local.sfsim.bulk import DELIMITERS, LINE_ENDINGS, BulkError, BulkJob

if TYPE_CHECKING:
    from tally_local.sfsim.handler import Handler


def bulk_jobs(h: Handler, match: re.Match[str]) -> None:
    """``GET`` lists the jobs, ``POST`` creates one."""
    if h.command == "GET":
        records = [job.info(detail=False) for job in h.server.bulk_jobs.all()]
        h.reply(200, {"done": True, "records": records, "nextRecordsUrl": None})
    else:
        _bulk(h, lambda: _create(h, match["ver"]))


def bulk_job(h: Handler, match: re.Match[str]) -> None:
    """``GET`` polls the job, ``DELETE`` deletes it, ``PATCH {"state": "Aborted"}`` aborts it."""
    jobs, job_id = h.server.bulk_jobs, match["job"]

    def act() -> None:
        if h.command == "GET":
            h.reply(200, jobs.poll(job_id, lambda job: _run(h, job)).info())
        elif h.command == "DELETE":
            jobs.delete(job_id)
            h.reply(204, b"")
        else:
            body = _json_body(h)
            state = body.get("state") if isinstance(body, dict) else None
            if state != "Aborted":
                jobs.get(job_id)  # 404 first, as Salesforce
                raise BulkError(400, "API_ERROR", f"A query job can only be set to Aborted, not {state!r}")
            h.reply(200, jobs.abort(job_id).info(detail=False))

    _bulk(h, act)


def bulk_results(h: Handler, match: re.Match[str]) -> None:
    def act() -> None:
        locator = h.params.get("locator", [None])[0]
        max_records = h.params.get("maxRecords", [None])[0]
        text, count, next_locator = h.server.bulk_jobs.page(match["job"], locator, max_records)
        headers = {"Sforce-Locator": next_locator, "Sforce-NumberOfRecords": str(count)}
        h.reply(200, text, "text/csv", headers)

    _bulk(h, act)


def _bulk(h: Handler, action: Callable[[], None]) -> None:
    try:
        action()
    except BulkError as exc:
        h.reply_error(exc.status, exc.error_code, exc.message)


def _json_body(h: Handler) -> Any:
    try:
        return json.loads(h.body or b"null")
    except ValueError as exc:
        raise BulkError(400, "JSON_PARSER_ERROR", f"Unexpected character in request body: {exc}") from None


def _create(h: Handler, ver: str) -> None:
    body = _json_body(h)
    if not isinstance(body, dict):
        raise BulkError(400, "JSON_PARSER_ERROR", "The request body must be a JSON object")
    operation, text = body.get("operation"), body.get("query")
    h.log_soql = text if isinstance(text, str) else ""
    if operation not in ("query", "queryAll"):
        raise BulkError(400, "API_ERROR", f"Invalid operation for a query job: {operation!r}")
    if body.get("contentType", "CSV") != "CSV":
        raise BulkError(400, "API_ERROR", "contentType must be CSV")
    delimiter, line_ending = body.get("columnDelimiter", "COMMA"), body.get("lineEnding", "LF")
    if delimiter not in DELIMITERS:
        raise BulkError(400, "API_ERROR", f"Invalid columnDelimiter: {delimiter!r}")
    if line_ending not in LINE_ENDINGS:
        raise BulkError(400, "API_ERROR", f"Invalid lineEnding: {line_ending!r}")
    if not isinstance(text, str):
        raise BulkError(400, "API_ERROR", "query is required for query jobs")
    parsed = _parse(h, text)
    faults = h.server.faults
    job = h.server.bulk_jobs.create(
        operation=operation,
        object=parsed.object_name,
        query=text,
        api_version=ver,
        column_delimiter=delimiter,
        line_ending=line_ending,
        created_by=USER_ID + sfid.suffix(USER_ID),
        polls_until_complete=faults.bulk_polls_until_complete,
        failure=faults.bulk_job_failure,
    )
    h.reply(200, job.info(detail=False))


def _parse(h: Handler, text: str) -> soql.SoqlQuery:
    try:
        parsed = soql.parse(text, h.server.catalog)
    except soql.SoqlError as exc:
        raise BulkError(400, "API_ERROR", exc.message) from None
    if parsed.is_count:
        raise BulkError(400, "API_ERROR", "Aggregate queries are not supported by Bulk API 2.0: COUNT()")
    return parsed


def _run(h: Handler, job: BulkJob) -> tuple[tuple[Field, ...], list[list[object]]]:
    parsed = _parse(h, job.query)  # against the org as it is now (drift may fail it)
    fields = tuple(f for name in parsed.fields for f in parsed.dataset.fields if f.name == name)
    rows = h.server.store.query(parsed, include_deleted=job.operation == "queryAll")
    return fields, [[rec[f.name] for f in fields] for _, rec in rows]
