"""Data Docs in a real headless Chromium with no internet: the index lists the validations.

GX's pages fill the index's table with bootstrap-table (a jQuery plugin) and draw pass/fail with
Font Awesome; loaded from CDNs, an offline browser showed an empty index and blank icons. Here
the site is opened from ``file://`` and from a local web server; the page may request nothing
from another host (Chromium's own network log, requests initiated by the page).
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from support import chromium
from support.docs_site import build_site
from support.png import count_colour

from tally.quality import docs

pytestmark = pytest.mark.integration

ROW = re.compile(r'<tr class="clickable-row" data-href="(validations/[^"]+)"[^>]*>(.*?)</tr>', re.S)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    chromium.require()
    root = tmp_path_factory.mktemp("docs")
    mp = pytest.MonkeyPatch()
    mp.setenv("TALLY_DATA_DOCS_DIR", str(root / "data_docs"))
    mp.delenv("TALLY_DATA_DOCS", raising=False)
    try:
        yield build_site(root)
    finally:
        mp.undo()


def _rows(dom: str) -> dict[str, str]:
    """The index's validation rows, as built by its scripts: page -> the row's text."""
    return {page: re.sub(r"<[^>]+>|\s+", " ", cells).strip() for page, cells in ROW.findall(dom)}


def test_the_index_lists_the_validations_from_file_urls_offline(site, tmp_path):
    entries = docs.latest(site)
    dom = chromium.dump_dom((site / "index.html").as_uri(), tmp_path)
    rows = _rows(dom)
    assert list(rows) == [e["filepath"] for e in entries]  # built by bootstrap-table: jQuery ran, offline
    passed, failed = (rows[e["filepath"]] for e in entries)
    assert passed.startswith("PASS") and "2024-01-03" in passed
    assert failed.startswith("FAIL") and "2024-01-02" in failed
    assert "No matching records found" not in dom
    png = chromium.screenshot((site / "index.html").as_uri(), tmp_path, tmp_path / "index.png", (1000, 600))
    assert png.stat().st_size > 20_000  # a rendered table, not a blank page
    # bootstrap's colours are on screen: its CSS loaded (red FAIL, green PASS: text and icons)
    assert count_colour(png, (0xDC, 0x35, 0x45)) > 50 and count_colour(png, (0x28, 0xA7, 0x45)) > 50
    page = chromium.dump_dom((site / entries[1]["filepath"]).as_uri(), tmp_path)
    assert "raw.salesforce.Opportunity" in page and ">FAIL</span>" in page and "Nurture" in page


def test_served_over_http_the_pages_request_nothing_from_other_hosts(site, tmp_path):
    entries = docs.latest(site)
    with chromium.serve(site) as base:
        for page in ("index.html", entries[1]["filepath"], "expectations/raw/salesforce/Opportunity.html"):
            dom, urls = chromium.requested(f"{base}/{page}", tmp_path)
            hosts = {urlsplit(u).netloc for u in urls}
            assert hosts == {urlsplit(base).netloc}, (page, sorted(u for u in urls if not u.startswith(base)))
            assert any(u.endswith("/jquery.min.js") for u in urls)
            if not page.startswith("expectations/"):  # pages with pass/fail icons load the icon font
                assert any(u.endswith("/fa-solid-900.woff2") for u in urls), page
            if page == "index.html":
                assert len(_rows(dom)) == 2
