"""Data Docs offline: the pages load every asset from the site itself; PASS/FAIL read as text.

(The same site in a real headless Chromium with the network off: tests/integration/test_data_docs_browser.py.)
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from support.docs_site import build_site

from tally.quality import docs, site_assets

_REF = re.compile(r"""(?:src|href)="([^"#]+)"|url\('([^']+)'\)""")


@pytest.fixture
def site(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("TALLY_DATA_DOCS_DIR", str(tmp_path / "data_docs"))
    monkeypatch.delenv("TALLY_DATA_DOCS", raising=False)
    return build_site(tmp_path)


def test_no_page_loads_or_links_anything_from_an_outside_host(site):
    pages = sorted(site.rglob("*.html"))
    assert len(pages) > 20  # the index, two validations, every shipped suite's page
    for page in pages:
        html = page.read_text()
        assert site_assets.outside_urls(html) == set(), page
        assert "integrity=" not in html and "crossorigin=" not in html  # SRI needs CORS: fails on file://


def test_every_asset_a_page_references_is_in_the_site(site):
    for page in site.rglob("*.html"):
        for ref in (a or b for a, b in _REF.findall(page.read_text())):
            assert not ref.startswith(("http:", "https:", "//")), (page, ref)
            if ref.startswith("data:"):
                continue
            target = (page.parent / ref.split("?")[0]).resolve()
            assert target.is_relative_to(site.resolve()) and target.is_file(), (page.relative_to(site), ref)
    index = (site / "index.html").read_text()
    for needed in ("jquery-3.7.1/jquery.min.js", "bootstrap-table-1.19.1/bootstrap-table.min.js",
                   "fontawesome-free-6.6.0/css/all.min.css"):
        assert f"./static/vendor/{needed}".removeprefix("./") in index
    css = (site / "static/vendor/fontawesome-free-6.6.0/css/all.min.css").read_text()
    assert "../webfonts/fa-solid-900.woff2" in css  # the icons' font, beside the CSS
    assert (site / "static/vendor/fontawesome-free-6.6.0/webfonts/fa-solid-900.woff2").is_file()


def test_pass_and_fail_are_written_in_text_beside_the_icons(site):
    entries = docs.latest(site)
    assert [e["validation_success"] for e in entries] == [True, False]
    index = (site / "index.html").read_text()
    assert index.count(">PASS</span>") == 1 and index.count(">FAIL</span>") == 1
    failed = (site / entries[1]["filepath"]).read_text()
    assert failed.count(">FAIL</span>") == 1 and failed.count(">PASS</span>") == 6  # one check of seven failed
    assert "Failed" in failed and "FAIL</span> Failed" not in failed  # the overview already says it in words
    passed = (site / entries[0]["filepath"]).read_text()
    assert ">FAIL</span>" not in passed and passed.count(">PASS</span>") == 7


def test_vendored_files_ship_with_their_licences_and_sources():
    vendor = site_assets.VENDOR
    sources = (vendor / "SOURCES.md").read_text()
    for local in set(site_assets.CDN.values()):
        assert (vendor / local).is_file(), local
        package = local.split("/")[0]
        assert f"`{package}/`" in sources, package
        assert any((vendor / package).glob("LICENSE*")) or "popper" in package, package
    assert "MIT" in (vendor / "popper.js-1.12.9/umd/popper.min.js").read_text()[:200]  # its licence, in the file


def test_localize_rewrites_at_the_pages_depth_and_drops_unused_vega():
    html = ('<script src="https://cdn.jsdelivr.net/npm/vega@5"></script>'
            '<script src="https://code.jquery.com/jquery-3.7.1.min.js" integrity="sha384-x" crossorigin="anonymous">'
            '</script><link href="../../static/images/favicon.ico"><a href="https://greatexpectations.io">GX</a>')
    out = site_assets.localize(html, "validations/a/b/ds/t/batch.html")
    assert out == ('<script src="../../../../../static/vendor/jquery-3.7.1/jquery.min.js"></script>'
                   '<link href="../../../../../static/images/favicon.ico">GX')
    assert site_assets.localize("<i>", "index.html") == "<i>"
    charted = '<script src="https://cdn.jsdelivr.net/npm/vega@5"></script><script>vegaEmbed("#g", spec)</script>'
    assert "vega@5" in site_assets.localize(charted, "index.html")  # a chart keeps its library (not offline)


def test_a_site_written_before_is_made_offline_by_its_next_update(tmp_path, monkeypatch):
    monkeypatch.setenv("TALLY_DATA_DOCS_DIR", str(tmp_path / "data_docs"))
    real = site_assets.localize
    monkeypatch.setattr(site_assets, "localize", lambda html, page: html)  # as an older Tally wrote it
    site = build_site(tmp_path)
    catalog = json.loads((site / "index.json").read_text())
    del catalog["vendor_version"]
    (site / "index.json").write_text(json.dumps(catalog))
    shutil.rmtree(site / "static" / "vendor")
    old = sorted(site.rglob("*.html"))
    assert all(site_assets.outside_urls(page.read_text()) for page in old)
    monkeypatch.setattr(site_assets, "localize", real)
    assert not docs.offline_ready(site)
    from typer.testing import CliRunner

    from tally.cli import app

    out = CliRunner().invoke(app, ["docs", "--no-open"])  # on-call opens the docs: upgraded (the next gate too)
    assert out.exit_code == 0 and "work offline" in out.output, out.output
    assert docs.offline_ready(site)
    assert all(site_assets.outside_urls(page.read_text()) == set() for page in old)
    assert (site / "static/vendor/jquery-3.7.1/jquery.min.js").is_file()
    again = {page: page.read_text() for page in old}
    assert site_assets.localize_site(site) == 0  # idempotent: no page changes twice
    assert {page: page.read_text() for page in old} == again
