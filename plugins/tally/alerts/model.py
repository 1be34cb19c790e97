"""What an alert says: built from a gate's results or a task's error, rendered as text.

An alert answers on-call's first questions at once: **what** failed (gate/suite, dataset, hop,
or the task and its error), **where** (DAG, ds, run id, task, try), **how** (observed vs
expected for every failed expectation, with sample keys), and **what next** (a runbook anchor,
Data Docs, the task log, commands to run).

``gate`` is the alert's dedupe key within (DAG, ds). A gate is a task in Tally's DAGs
(``land.gate_raw``, ``gate_curated``, ``gate_warehouse``, ``gate_mart``), so a gate task's
failure is keyed by its task id, whichever of its suites failed and however often it is re-run;
any other task's failure by ``task:<task_id>``. The raw gate is one task for every source
dataset, which fail and heal independently (each is re-extracted on its own): its verdict is one
alert per failed dataset, keyed ``<task_id>:<dataset>`` (:func:`failure_alerts`). A gate alert
built without a task (from core code) is keyed by its failed suites.
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from tally.alerts.config import DEFAULT_RUNBOOK_URL

GATE_HOPS = ("raw", "curated", "warehouse", "mart")

# category -> (label, runbook anchor). Anchors are GitHub slugs of docs/runbook.md's headings.
CATEGORIES: dict[str, tuple[str, str]] = {
    "raw_gate": ("Raw gate failed", "raw-gate-failed"),
    "schema_drift": ("Schema drift", "schema-drift"),
    "curated_gate": ("Curated gate failed", "curated-gate-failed"),
    "warehouse_gate": ("Warehouse gate failed", "warehouse-gate-failed"),
    "mart_gate": ("Mart gate failed", "mart-gate-failed"),
    "gate_failed": ("Gate failed", "another-gate-failed"),
    "extract_failed": ("Extraction gave up", "extraction-gave-up"),
    "spark_failed": ("Spark job failed", "spark-job-failed"),
    "load_failed": ("Warehouse load failed", "warehouse-load-failed"),
    "publish_failed": ("Warehouse publish failed", "warehouse-publish-failed"),
    "dbt_failed": ("dbt build failed", "dbt-build-failed"),
    "task_failed": ("Task failed", "another-task-failed"),
    "deadline_missed": ("Run missed its deadline", "run-missed-its-deadline"),
}
DEADLINE_TASK = "deadline"  # the task id of a DAG run's deadline alert (tally.airflow.callback)
SAMPLE_SHOWN = 5  # sample keys per failure in text and Slack (the webhook JSON carries all, up to 10)
MAX_ERROR = 1800  # characters of a task's error kept in an alert


@dataclass
class Alert:
    dag_id: str
    ds: str
    gate: str
    category: str
    title: str
    summary: str
    task_id: str | None = None
    run_id: str | None = None
    try_number: int | None = None
    hop: str | None = None
    dataset: str | None = None
    suites: list[str] = field(default_factory=list)
    # one per failed expectation: suite, expectation, column, observed, expected, key, sample (the
    # offending rows, {"key": {column: value}, "values": {column: value}}), note, text
    failures: list[dict] = field(default_factory=list)
    error: str | None = None  # a non-gate failure's error message (redacted, shortened)
    links: dict[str, str] = field(default_factory=dict)  # runbook, data_docs, log
    commands: list[str] = field(default_factory=list)  # what on-call runs first
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    id: int | None = None  # the ops.alerts row, once recorded

    @property
    def label(self) -> str:
        return CATEGORIES.get(self.category, CATEGORIES["task_failed"])[0]

    @property
    def anchor(self) -> str:
        return CATEGORIES.get(self.category, CATEGORIES["task_failed"])[1]

    @property
    def is_gate(self) -> bool:
        """A gate's verdict (failed suites), not an error."""
        return bool(self.suites)

    def where(self) -> str:
        parts = [f"dag {self.dag_id}", f"ds {self.ds}"]
        if self.run_id:
            parts.append(f"run {self.run_id}")
        if self.task_id:
            parts.append(f"task {self.task_id}" + (f" (try {self.try_number})" if self.try_number else ""))
        return ", ".join(parts)

    def ack_command(self) -> str:
        return f"tally alerts ack {self.id if self.id is not None else '<id>'} --by <you> --note '<what you did>'"

    def to_dict(self) -> dict:
        return {**asdict(self), "label": self.label, "where": self.where()}

    def text(self) -> str:
        """The plain-text message (email body; Slack's fallback text is the title)."""
        lines = [self.title, "", f"What:  {self.summary}", f"Where: {self.where()}"]
        if self.is_gate:
            lines.append(f"Gate:  {', '.join(self.suites) or self.gate} (dataset {self.dataset}, hop {self.hop})")
        if self.failures:
            lines += ["", "Failed checks:"]
            for f in self.failures:
                lines.append(f"  - [{f.get('suite')}] {f.get('text')}")
                if f.get("sample"):
                    lines.append(f"    {sample_label(f['sample'])}: " + sample_text(f["sample"]))
                if f.get("note"):
                    lines.append(f"    why it matters: {f['note']}")
        if self.error:
            lines += ["", "Error:", *("  " + line for line in self.error.splitlines())]
        if self.commands:
            lines += ["", "First steps:", *(f"  $ {c}" for c in self.commands)]
        lines += [""]
        for name, title in (("runbook", "Runbook"), ("data_docs", "Data Docs"), ("log", "Task log")):
            if self.links.get(name):
                lines.append(f"{title + ':':<11}{self.links[name]}")
        lines.append(f"{'Ack:':<11}{self.ack_command()}")
        return "\n".join(lines) + "\n"


# -- builders -------------------------------------------------------------------------------
def gate_alert(
    dag_id: str,
    ds: str,
    results: Iterable[Any],
    *,
    task_id: str | None = None,
    run_id: str | None = None,
    try_number: int | None = None,
    log_url: str | None = None,
    data_docs_url: str = "",
    runbook_url: str = DEFAULT_RUNBOOK_URL,
    message: str = "",
    gate: str | None = None,
) -> Alert:
    """An alert for a gate's verdict: ``results`` are ``GateResult``s (or their ``to_dict()``);
    only the failed ones are reported. ``gate`` (the dedupe key) defaults to ``task_id``."""
    from tally.quality.result import describe_failure

    failed = [r for r in map(_result_dict, results) if not r.get("success")]
    if not failed:
        raise ValueError("gate_alert needs at least one failed gate result")
    suites = [r["suite"] for r in failed]
    main = next((r for r in failed if not r["suite"].startswith("schema.")), failed[0])
    if all(r["suite"].startswith("schema.") for r in failed):
        category = "schema_drift"
    else:
        category = f"{main['hop']}_gate" if main["hop"] in GATE_HOPS else "gate_failed"
    failures = []
    for r in failed:
        for f in r.get("failures") or []:
            failures.append({
                "suite": r["suite"], "expectation": f.get("expectation"), "column": f.get("column"),
                "observed": f.get("observed"), "expected": f.get("expected"),
                "unexpected_count": f.get("unexpected_count"), "element_count": f.get("element_count"),
                "key": f.get("key"), "sample": list(f.get("sample") or []), "note": f.get("note"),
                "error": f.get("error"),
                "text": describe_failure(f),
            })
    checks = sum(int(r.get("failed") or 0) for r in failed)
    evaluated = sum(int(r.get("evaluated") or 0) for r in failed)
    label, anchor = CATEGORIES[category]
    shown = ", ".join(suites[:3]) + (f" and {len(suites) - 3} more" if len(suites) > 3 else "")
    alert = Alert(
        dag_id=dag_id, ds=ds, gate=gate or task_id or "+".join(sorted(suites)), category=category,
        title=f"{label}: {shown} ({checks} of {evaluated} checks failed) — {dag_id} ds={ds}",
        summary="; ".join(_result_summary(r) for r in failed) or message,
        task_id=task_id, run_id=run_id, try_number=try_number, hop=main["hop"],
        dataset=", ".join(dict.fromkeys(r["dataset"] for r in failed)),
        suites=suites, failures=failures,
        commands=[f"tally reconcile --ds {ds}"],
    )
    # the Data Docs page of the failed validation (GateResult.data_docs), when the gate wrote one
    page = next((r.get("data_docs") for r in [main, *failed] if r.get("data_docs")), "")
    alert.links = _links(alert, anchor, data_docs_url, runbook_url, log_url, data_docs_page=page)
    return alert


def task_alert(
    dag_id: str,
    ds: str,
    task_id: str,
    error: BaseException | str | None,
    *,
    run_id: str | None = None,
    try_number: int | None = None,
    log_url: str | None = None,
    data_docs_url: str = "",
    runbook_url: str = DEFAULT_RUNBOOK_URL,
    secrets: Iterable[str] = (),
) -> Alert:
    """An alert for a task that failed for good (retries exhausted, or a data problem that is
    not a gate's verdict: dbt failed, nothing committed to validate...)."""
    from tally.alerts.config import redact

    category = task_category(task_id)
    label, anchor = CATEGORIES[category]
    message = redact(error_text(error), secrets)
    tries = f" after {try_number} {'try' if try_number == 1 else 'tries'}" if try_number else ""
    plain = redact(str(error) if error is not None else message, secrets)
    first = " ".join(plain.split()) or (type(error).__name__ if isinstance(error, BaseException) else "no message")
    alert = Alert(
        dag_id=dag_id, ds=ds, gate=task_id if category.endswith("_gate") else f"task:{task_id}", category=category,
        title=f"{label}: {task_id}{tries} — {dag_id} ds={ds}",
        summary=f"{task_id} failed{tries}: " + (first if len(first) <= 300 else first[:299] + "…"),
        task_id=task_id, run_id=run_id, try_number=try_number, hop=_task_hop(task_id), error=message,
        commands=[f"tally reconcile --ds {ds}"],
    )
    alert.links = _links(alert, anchor, data_docs_url, runbook_url, log_url)
    return alert


def failure_alert(
    dag_id: str,
    ds: str,
    task_id: str,
    exception: BaseException | str | None,
    **kwargs: Any,
) -> Alert:
    """The alert for a failed task: a gate alert when the exception (or what it was raised
    from, e.g. an ``AirflowFailException`` from a ``DataProblem``) carries failed gate results,
    else a task alert with the error message."""
    results = gate_results_of(exception) if isinstance(exception, BaseException) else []
    secrets = kwargs.pop("secrets", ())
    if results:
        return gate_alert(dag_id, ds, results, task_id=task_id, message=str(exception), **kwargs)
    return task_alert(dag_id, ds, task_id, exception, secrets=secrets, **kwargs)


def failure_alerts(
    dag_id: str,
    ds: str,
    task_id: str,
    exception: BaseException | str | None,
    **kwargs: Any,
) -> list[Alert]:
    """The alerts for a failed task: :func:`failure_alert`'s one alert, except for a raw gate
    task whose failed results name datasets: one alert per failed dataset, keyed
    ``<task_id>:<dataset>``, so each dataset alerts once per (DAG, ds), and a dataset that fails
    on a re-run after another was healed still pages."""
    results = gate_results_of(exception) if isinstance(exception, BaseException) else []
    if not results or task_category(task_id) != "raw_gate":
        return [failure_alert(dag_id, ds, task_id, exception, **kwargs)]
    kwargs.pop("secrets", None)
    by_dataset: dict[str, list[Any]] = {}
    for r in results:
        by_dataset.setdefault(str(_result_dict(r).get("dataset") or ""), []).append(r)
    return [gate_alert(dag_id, ds, failed, task_id=task_id, message=str(exception),
                       gate=f"{task_id}:{dataset}" if dataset else task_id, **kwargs)
            for dataset, failed in by_dataset.items()]


def gate_results_of(exc: BaseException | None) -> list[Any]:
    """The failed gate results carried by ``exc`` or any exception in its cause chain
    (``DataProblem.results``)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        results = getattr(exc, "results", None) or []
        failed = [r for r in results if _looks_like_result(r) and not _result_dict(r).get("success")]
        if failed:
            return failed
        exc = exc.__cause__ or exc.__context__
    return []


def task_category(task_id: str) -> str:
    name = task_id.rsplit(".", 1)[-1].lower()
    if name == DEADLINE_TASK:
        return "deadline_missed"
    if name.startswith("gate_"):
        hop = name.removeprefix("gate_").split("_", 1)[0]
        return f"{hop}_gate" if hop in GATE_HOPS else "gate_failed"
    for prefix, category in (("extract", "extract_failed"), ("land", "extract_failed"), ("spark", "spark_failed"),
                             ("load", "load_failed"), ("publish", "publish_failed"),
                             ("dbt", "dbt_failed")):
        if name.startswith(prefix):
            return category
    return "task_failed"


def error_text(error: BaseException | str | None, limit: int = MAX_ERROR) -> str:
    """The error's type and message; a long one keeps its head and its tail (where dbt and
    spark-submit put the cause)."""
    if error is None:
        return "the task failed without an exception (killed, timed out, or marked failed)"
    if isinstance(error, BaseException):
        cause = error.__cause__
        kind = type(cause if cause is not None and str(cause) == str(error) else error).__name__
        text = f"{kind}: {error}".strip()
    else:
        text = str(error).strip()
    if len(text) > limit:
        head = limit // 5
        text = f"{text[:head]}\n… ({len(text) - limit} characters cut) …\n{text[-(limit - head):]}"
    return text


def sample_label(sample: list) -> str:
    """``sample keys`` when the sample names offending rows by key, ``sample`` for bare values."""
    return "sample keys" if any(isinstance(s, Mapping) and "key" in s for s in sample) else "sample"


def sample_text(sample: list, shown: int = SAMPLE_SHOWN) -> str:
    """The first samples for people: ``payment_id P-123 (amount -500.000000000), …``."""
    from tally.quality.result import format_sample

    return ", ".join(format_sample(s) for s in sample[:shown])


# -- helpers --------------------------------------------------------------------------------
def _looks_like_result(r: Any) -> bool:
    return (isinstance(r, Mapping) and "suite" in r) or (hasattr(r, "suite") and hasattr(r, "failures"))


def _result_dict(r: Any) -> dict:
    if isinstance(r, Mapping):
        return dict(r)
    if hasattr(r, "to_dict"):
        return r.to_dict()
    return dict(vars(r))


def _result_summary(r: dict) -> str:
    from tally.quality.result import describe_failure

    evaluated, failed = int(r.get("evaluated") or 0), int(r.get("failed") or 0)
    head = f"{r['suite']}: {evaluated - failed}/{evaluated} passed"
    return "; ".join([head, *(describe_failure(f) for f in r.get("failures") or [])])


def _task_hop(task_id: str) -> str | None:
    category = task_category(task_id)
    return {"extract_failed": "raw", "spark_failed": "curated", "load_failed": "warehouse", "publish_failed": "warehouse",
            "dbt_failed": "mart"}.get(category, category.removesuffix("_gate") if category.endswith("_gate") else None)


class _Blank(dict):
    def __missing__(self, key: str) -> str:
        return ""


def fill(template: str, alert: Alert) -> str:
    """``template`` with ``{ds}``, ``{dag_id}``, ``{suite}``, ``{dataset}``, ``{hop}``, ``{gate}``
    filled in (unknown placeholders become empty; a template without any is returned as is)."""
    if not template or "{" not in template:
        return template
    values = _Blank(ds=alert.ds, dag_id=alert.dag_id, suite=(alert.suites or [""])[0], dataset=alert.dataset or "",
                    hop=alert.hop or "", gate=alert.gate)
    try:
        return string.Formatter().vformat(template, (), values)
    except (ValueError, IndexError):
        return template


def data_docs_link(data_docs_url: str, page: str, alert: Alert) -> str:
    """The Data Docs link of an alert. ``data_docs_url`` is the site's index (``…/index.html``,
    the default) or a template with placeholders; ``page`` is the failed validation's page,
    relative to the site (``validations/raw/…html``). An index URL links straight to the page;
    a template is the operator's choice and is only filled in."""
    from urllib.parse import quote

    link = fill(data_docs_url, alert)
    if not page or "{" in data_docs_url:
        return link
    root = link.split("#", 1)[0].split("?", 1)[0]
    if root.endswith("/"):
        return root + quote(page)
    head, _, last = root.rpartition("/")
    if head and last.endswith((".html", ".htm")):
        return f"{head}/{quote(page)}"
    return link


def _links(alert: Alert, anchor: str, data_docs_url: str, runbook_url: str, log_url: str | None,
           data_docs_page: str = "") -> dict[str, str]:
    links = {}
    if runbook_url:
        links["runbook"] = f"{fill(runbook_url, alert).split('#', 1)[0]}#{anchor}"
    if data_docs_url:
        links["data_docs"] = data_docs_link(data_docs_url, data_docs_page, alert)
    if log_url:
        links["log"] = log_url
    return links
