"""Great Expectations Data Docs for Tally's gates: a static site, updated after every validation.

The site lives in ``$TALLY_HOME/data_docs/`` (``TALLY_DATA_DOCS_DIR`` overrides it)::

    index.html                       Data Docs index: validation results (newest first), suites
    index.json                       what the index lists (Tally's own small catalog of pages)
    static/                          GX's CSS, fonts and images (copied once per GX version)
    static/vendor/                   bootstrap, jQuery, Font Awesome...: the pages load nothing from
                                     the internet (``tally.quality.site_assets``), so the site works offline
    validations/<suite parts>/<run name>/<run time>/<batch>.html   one page per validation
    expectations/<suite parts>.html  one page per suite (re-rendered when the suite file changes)

Pages are rendered by GX's own renderers and Jinja views (the same HTML as
``context.build_data_docs()``, made offline by ``site_assets``: every CDN asset rewritten to the
site's own copy, PASS/FAIL spelled out beside the icons), but incrementally: a gate renders *its*
validation page and re-renders the index from ``index.json``. GX's site builder instead lists and
re-reads every stored result and recompiles its templates on each build (0.3-0.7 s per gate with a few hundred
results, growing). Here a gate pays ~0.03 s for its page and ~0.05 s for the index, flat (a gate
validating several datasets renders the index once for all of them: :func:`batch_publish`): the
index lists the newest ``INDEX_ROWS`` (60) validations (GX's index renderer costs ~0.6 ms a
row); ``tally docs --suite``/``--failed`` and the alerts reach older pages. The site keeps the newest ``TALLY_DATA_DOCS_KEEP`` (default 500, about a month of daily
runs) validation pages, so an alert's link stays valid; older pages are deleted.

Writers take a lock (``.lock``, ``flock``) so parallel gate tasks on one machine never lose each
other's entries; every file is written aside and renamed. ``TALLY_DATA_DOCS=off`` disables the
site (the gates then return no page). Building the site never fails a gate: errors are logged.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tally.quality import site_assets

log = logging.getLogger(__name__)

ENV_DIR = "TALLY_DATA_DOCS_DIR"
ENV_SWITCH = "TALLY_DATA_DOCS"
ENV_KEEP = "TALLY_DATA_DOCS_KEEP"
DEFAULT_KEEP = 500
INDEX_ROWS = 60  # ~3 daily runs of every gate; GX's index renderer costs ~0.6 ms a row
SITE_NAME = "Tally gates"
INDEX = "index.html"
CATALOG = "index.json"
_LOCK = threading.Lock()
_VIEWS: dict[str, Any] = {}


def docs_dir() -> Path:
    """The site's directory: ``$TALLY_DATA_DOCS_DIR``, else ``$TALLY_HOME/data_docs``."""
    env = os.environ.get(ENV_DIR)
    if env:
        return Path(env).resolve()
    from tally.core.paths import tally_home

    return tally_home() / "data_docs"


def enabled() -> bool:
    return os.environ.get(ENV_SWITCH, "on").strip().lower() not in ("0", "off", "false", "no")


def index_path(directory: Path | None = None) -> Path:
    return (directory or docs_dir()) / INDEX


def page_url(page: str, directory: Path | None = None) -> str:
    """``file://`` URL of a page of the local site (``page`` relative to the site's root)."""
    return ((directory or docs_dir()) / page).as_uri()


# -- rendering (GX renderers and views; one Jinja environment per process) ---------------------
def _view(kind: str) -> Any:
    """GX's Jinja page views, created once per process: each ``DefaultJinjaView`` builds its own
    Jinja environment, and compiling GX's templates is most of a site build's time."""
    with _LOCK:
        if kind not in _VIEWS:
            from great_expectations.render.view import DefaultJinjaIndexPageView, DefaultJinjaPageView

            _VIEWS[kind] = DefaultJinjaIndexPageView() if kind == "index" else DefaultJinjaPageView()
        return _VIEWS[kind]


def render_validation(result: Any) -> str:
    from great_expectations.render.renderer import ValidationResultsPageRenderer

    return _view("page").render(ValidationResultsPageRenderer().render(result))


def render_suite(suite: Any) -> str:
    from great_expectations.render.renderer import ExpectationSuitePageRenderer

    return _view("page").render(ExpectationSuitePageRenderer().render(suite))


def render_index(catalog: dict) -> str:
    from great_expectations.render.renderer.site_index_page_renderer import SiteIndexPageRenderer

    links: dict[str, Any] = {"site_name": SITE_NAME}
    links["validations_links"] = [
        {**entry, "run_time": datetime.fromisoformat(entry["run_time"]), "batch_kwargs": {}, "batch_spec": {}}
        for entry in catalog.get("validations", [])[:INDEX_ROWS]
    ]
    links["expectations_links"] = [
        {"expectation_suite_name": name, "filepath": suite_page(name)} for name in sorted(catalog.get("suites", {}))
    ]
    return _view("index").render(SiteIndexPageRenderer.render(links))


def warm_up(result: Any, suite: Any) -> None:
    """Render a validation page, a suite page and an index in memory (nothing written): compiles
    GX's templates, so processes forked afterwards render at once (see ``tally.airflow.preload``)."""
    render_validation(result)
    render_suite(suite)
    entry = {"expectation_suite_name": "s.t", "filepath": "v.html", "run_name": "r", "batch_identifier": "b",
             "run_time": datetime.now(UTC).isoformat(), "asset_name": "a", "validation_success": False,
             "expectation_suite_filepath": "e.html"}
    render_index({"validations": [entry], "suites": {"s.t": ""}})


# -- the site ----------------------------------------------------------------------------------
def _slug(text: str, limit: int = 80) -> str:
    slug = re.sub(r"[^A-Za-z0-9._=-]+", "_", text).strip("._") or "batch"
    if len(slug) > limit:
        slug = f"{slug[:limit - 13]}_{hashlib.sha256(text.encode()).hexdigest()[:12]}"
    return slug


def validation_page(suite_name: str, run_name: str, run_time: datetime, batch: str) -> str:
    """The page of one validation, relative to the site (GX's own layout). The run time carries
    the writing process's id: gates forked in parallel can validate the same suite and batch in
    the same microsecond, and then one page replaced the other (seen in the parallel test)."""
    stamp = f"{run_time.astimezone(UTC).strftime('%Y%m%dT%H%M%S.%fZ')}-p{os.getpid()}"
    parts = ["validations", *suite_name.split("."), _slug(run_name), stamp, _slug(batch)]
    return "/".join(parts) + ".html"


def suite_page(suite_name: str) -> str:
    return "/".join(["expectations", *suite_name.split(".")]) + ".html"


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _write_page(directory: Path, page: str, html: str) -> None:
    """Write a rendered page with every asset served by the site itself (``site_assets``)."""
    _write(directory / page, site_assets.localize(html, page))


@contextlib.contextmanager
def _site_lock(directory: Path) -> Iterator[None]:
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _read_catalog(directory: Path) -> dict:
    try:
        data = json.loads((directory / CATALOG).read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _ensure_static(directory: Path, catalog: dict) -> None:
    """GX's static assets (CSS, fonts, images) and the vendored ones (bootstrap, jQuery, icons:
    ``site_assets``), copied when missing or from another GX or vendored version."""
    import great_expectations

    vendored = site_assets.version()
    if catalog.get("vendor_version") != vendored or not (directory / site_assets.SITE_VENDOR).is_dir():
        site_assets.copy_vendor(directory)
        if "vendor_version" not in catalog and catalog.get("validations"):  # a site from before: pages too
            log.info("Data Docs: %d existing pages made offline", site_assets.localize_site(directory))
        catalog["vendor_version"] = vendored
    if catalog.get("gx_version") == great_expectations.__version__ and (directory / "static").is_dir():
        return
    source = Path(great_expectations.__file__).parent / "render" / "view" / "static"
    shutil.copytree(source, directory / "static", dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns(".DS_Store"))
    catalog["gx_version"] = great_expectations.__version__


def _keep() -> int:
    try:
        return max(1, int(os.environ.get(ENV_KEEP, DEFAULT_KEEP)))
    except ValueError:
        return DEFAULT_KEEP


def _publish_suite(directory: Path, catalog: dict, suite_dict: dict, suite: Any | None) -> None:
    digest = hashlib.sha256(json.dumps(suite_dict, sort_keys=True, default=str).encode()).hexdigest()
    suites = catalog.setdefault("suites", {})
    page = directory / suite_page(suite_dict["name"])
    if suites.get(suite_dict["name"]) != digest or not page.exists():
        if suite is None:  # rendered in a forked worker, which kept the GX object
            from tally.quality.suites import build_suite

            suite = build_suite(suite_dict)
        _write_page(directory, suite_page(suite_dict["name"]), render_suite(suite))
        suites[suite_dict["name"]] = digest


@dataclass
class _Pending:
    page: str
    html: str
    suite_dict: dict
    suite: Any  # the GX suite object (None once it crossed a process boundary: rebuilt if needed)
    entry: dict


_PENDING: list[_Pending] | None = None  # validations published inside batch_publish(), not yet written


def pending_count() -> int:
    """How many validations wait for the current ``batch_publish`` block (0 outside one)."""
    with _LOCK:
        return len(_PENDING or [])


def pending_since(count: int) -> list[_Pending]:
    """The validations published after ``pending_count()`` returned ``count``, ready to pickle
    (a forked gate worker hands them to its parent: ``tally.quality.parallel``)."""
    with _LOCK:
        return [_Pending(p.page, p.html, p.suite_dict, None, p.entry) for p in (_PENDING or [])[count:]]


def add_pending(items: list[_Pending]) -> None:
    """Join validations rendered elsewhere to the current ``batch_publish`` block (written at
    once outside one)."""
    if not items:
        return
    with _LOCK:
        if _PENDING is not None:
            _PENDING.extend(items)
            return
    _commit(docs_dir(), list(items))


@contextlib.contextmanager
def batch_publish(directory: Path | None = None) -> Iterator[None]:
    """Publish every validation made inside the block with *one* index update, at its end.

    A gate validating several datasets in one process (the raw gate) renders each validation's
    page as it goes, then takes the site's lock once, writes the pages and re-renders the index
    once, instead of once per validation. Pages are written even when the block raises (they
    are valid results). Nested blocks join the outermost one."""
    global _PENDING
    with _LOCK:
        outer = _PENDING is None
        if outer:
            _PENDING = []
    if not outer:
        yield
        return
    try:
        yield
    finally:
        with _LOCK:
            pending, _PENDING = _PENDING or [], None
        if pending:
            try:
                _commit(directory or docs_dir(), pending)
            except Exception:  # building the site never fails a gate
                log.warning("could not update the Data Docs site at %s", directory or docs_dir(), exc_info=True)


def publish(
    result: Any,
    suite_dict: dict,
    suite: Any,
    *,
    run_name: str,
    batch: str,
    asset: str,
    directory: Path | None = None,
) -> str:
    """Add one GX validation result to the site; returns its page, relative to the site's root.

    ``result`` is the ``ExpectationSuiteValidationResult`` of ``suite`` (built from
    ``suite_dict``); ``run_name`` groups a run's pages (the ds), ``batch`` names what was validated
    (a partition, a table slice) and ``asset`` is shown in the index. Inside a :func:`batch_publish` block
    (for the default site) the page is rendered now and written with the block's index update.
    """
    from great_expectations.core.run_identifier import RunIdentifier

    run_time = datetime.now(UTC)
    name = suite_dict["name"]
    page = validation_page(name, run_name, run_time, batch)
    result.meta["run_id"] = RunIdentifier(run_name=run_name, run_time=run_time)  # shown in the page's header
    item = _Pending(page, render_validation(result), suite_dict, suite, {  # rendering: the expensive part
        "expectation_suite_name": name, "filepath": page, "run_name": run_name,
        "run_time": run_time.isoformat(), "batch_identifier": batch, "asset_name": asset,
        "validation_success": bool(result.success), "expectation_suite_filepath": suite_page(name),
    })
    with _LOCK:
        if _PENDING is not None and directory is None:
            _PENDING.append(item)
            return page
    _commit(directory or docs_dir(), [item])
    return page


def _commit(directory: Path, items: list[_Pending]) -> None:
    """Write rendered validation pages and update the catalog and index once, under the lock."""
    with _site_lock(directory):
        catalog = _read_catalog(directory)
        _ensure_static(directory, catalog)
        for item in items:
            _write_page(directory, item.page, item.html)
            _publish_suite(directory, catalog, item.suite_dict, item.suite)
        entries = [*(item.entry for item in reversed(items)), *catalog.get("validations", [])]  # newest first
        keep = _keep()
        for old in entries[keep:]:
            with contextlib.suppress(OSError):
                (directory / old["filepath"]).unlink()
        catalog["validations"] = entries[:keep]
        _write_page(directory, INDEX, render_index(catalog))
        _write(directory / CATALOG, json.dumps(catalog, indent=1, sort_keys=True))


def build_index(directory: Path | None = None, suites_dir: Path | None = None) -> Path:
    """(Re)render the index and every shipped suite's page: what ``tally docs`` does when no gate
    has run yet, so the site always opens. Returns the index path."""
    from tally.quality.suites import build_suite, list_suites, load_suite_dict

    directory = directory or docs_dir()
    with _site_lock(directory):
        catalog = _read_catalog(directory)
        _ensure_static(directory, catalog)
        for name in list_suites(suites_dir):
            suite_dict = load_suite_dict(name, suites_dir)
            _publish_suite(directory, catalog, suite_dict, build_suite(suite_dict))
        _write_page(directory, INDEX, render_index(catalog))
        _write(directory / CATALOG, json.dumps(catalog, indent=1, sort_keys=True))
    return directory / INDEX


def offline_ready(directory: Path | None = None) -> bool:
    """Whether the site has this Tally's vendored assets and its pages were made offline (a site
    written by an older Tally is upgraded by the next gate or :func:`build_index`)."""
    return _read_catalog(directory or docs_dir()).get("vendor_version") == site_assets.version()


def latest(directory: Path | None = None, suite: str | None = None, failed_only: bool = False) -> list[dict]:
    """The index's entries, newest first (optionally one suite's, or only failed validations)."""
    entries = _read_catalog(directory or docs_dir()).get("validations", [])
    return [e for e in entries if (suite is None or e["expectation_suite_name"] == suite)
            and not (failed_only and e.get("validation_success"))]
