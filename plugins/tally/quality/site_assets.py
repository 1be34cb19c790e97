"""Data Docs that work offline: every asset a page needs is served by the site itself.

GX's page templates load bootstrap, bootstrap-table, jQuery, popper, the datepicker, the dark
theme and Font Awesome from CDNs, and the logo from S3: with no internet (a locked-down VPC) the
index's list of validations is never built (it is filled by bootstrap-table, a jQuery plugin) and
the pass/fail icons are blank. Tally vendors the exact files those URLs name (from their npm
packages, with their licences: ``static/vendor/SOURCES.md``), copies them into the site's
``static/vendor/`` and rewrites each rendered page:

- every CDN URL becomes a relative URL of the local copy (relative, so the site works from
  ``file://``, from any web server and when the folder is copied elsewhere);
- the S3 logo becomes GX's own ``static/images/logo-long.png``; links to outside sites become text;
  every ``../static/`` URL is made relative to the page's real depth (GX's favicon link on
  validation pages is one level short);
- vega (charts) is dropped from pages without a chart (no Tally suite uses the two chart-drawing
  expectations, ``expect_column_kl_divergence_to_be_less_than`` and
  ``expect_column_distinct_values_to_be_in_set``; a page with a chart keeps its vega URLs and a
  warning is logged);
- every pass/fail icon gets a ``PASS``/``FAIL`` label, so the verdict reads without the icon font.
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
from pathlib import Path

log = logging.getLogger(__name__)

VENDOR = Path(__file__).parent / "static" / "vendor"
SITE_VENDOR = "static/vendor"  # where the vendored files live in a site

# CDN URL in GX's templates -> the vendored file, relative to static/vendor/
CDN: dict[str, str] = {
    "https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css": "bootstrap-4.3.1/css/bootstrap.min.css",
    "https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js": "bootstrap-4.3.1/js/bootstrap.min.js",
    "https://code.jquery.com/jquery-3.7.1.min.js": "jquery-3.7.1/jquery.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js": "popper.js-1.12.9/umd/popper.min.js",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.css": "bootstrap-table-1.19.1/bootstrap-table.min.css",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.js": "bootstrap-table-1.19.1/bootstrap-table.min.js",
    # GX pins the filter-control CSS at 1.19.0 (minified on the index, plain on pages): the 1.19.1 file
    # is the same rules, and goes with the 1.19.1 script
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.min.css":
        "bootstrap-table-1.19.1/extensions/filter-control/bootstrap-table-filter-control.min.css",
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.css":
        "bootstrap-table-1.19.1/extensions/filter-control/bootstrap-table-filter-control.min.css",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/extensions/filter-control/bootstrap-table-filter-control.min.js":
        "bootstrap-table-1.19.1/extensions/filter-control/bootstrap-table-filter-control.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/css/bootstrap-datepicker.min.css":
        "bootstrap-datepicker-1.9.0/css/bootstrap-datepicker.min.css",
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/js/bootstrap-datepicker.min.js":
        "bootstrap-datepicker-1.9.0/js/bootstrap-datepicker.min.js",
    "https://cdn.jsdelivr.net/npm/@forevolve/bootstrap-dark@1.1.0/dist/css/bootstrap-prefers-dark.css":
        "bootstrap-dark-1.1.0/css/bootstrap-prefers-dark.min.css",
    "https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css": "fontawesome-free-6.6.0/css/all.min.css",
}
_GX_ASSETS = re.compile(r"https://great-expectations-web-assets\.s3\.[a-z0-9-]+\.amazonaws\.com/[A-Za-z_.-]+\.png"
                        r"(\?[^\"')\s]*)?")
_VEGA = re.compile(r'\s*<script src="https://cdn\.jsdelivr\.net/npm/vega(-lite|-embed)?@\d+"></script>')
_SRI = re.compile(r'\s+(integrity="[^"]*"|crossorigin="[^"]*")')  # SRI needs CORS: fails on file://
_OUTSIDE_LINK = re.compile(r'<a href="https?://[^"]*"[^>]*>(.*?)</a>', re.S)
_NEWSLETTER = re.compile(r"<footer>\s*<p>[^<]*newsletter.*?</footer>", re.S | re.I)
_ICON = re.compile(r'(<i class="fas (fa-check-circle text-success|fa-times text-danger)[^"]*"[^>]*></i>)'
                   r'(?!\s*(Succeeded|Failed|<span class="tally-verdict))')  # the overview says it; done
_STATIC = re.compile(r"""(["'(])(?:\.\./)+static/""")  # GX's favicon is one level short on validation pages
_URL = re.compile(r"""https?://([^/"'\s)<>\\]+)""")
LOCAL_HOSTS = ("localhost", "127.0.0.1", "[::1]")


def _label(match: re.Match[str]) -> str:
    passed = "check" in match.group(2)
    word, colour = ("PASS", "text-success") if passed else ("FAIL", "text-danger")
    return f'{match.group(1)} <span class="tally-verdict {colour} font-weight-bold">{word}</span>'


def localize(html: str, page: str) -> str:
    """``html`` of the site's page ``page`` (relative to the site's root), with every asset local."""
    up = "../" * page.count("/")
    for url, local in CDN.items():
        html = html.replace(url, f"{up}{SITE_VENDOR}/{local}")
    html = _GX_ASSETS.sub(f"{up}static/images/logo-long.png", html)
    html = _STATIC.sub(lambda m: f"{m.group(1)}{up}static/", html)
    if "vegaEmbed(" not in html:
        html = _VEGA.sub("", html)
    html = _SRI.sub("", html)
    html = _NEWSLETTER.sub("", html)
    html = _OUTSIDE_LINK.sub(r"\1", html)
    html = _ICON.sub(_label, html)
    outside = outside_urls(html)
    if outside:
        log.warning("Data Docs page %s still loads from outside hosts (not offline): %s", page, sorted(outside))
    return html


def outside_urls(text: str) -> set[str]:
    """Hosts of the ``http(s)://`` URLs in ``text`` that are not this machine."""
    return {host for host in _URL.findall(text)
            if not any(host == local or host.startswith(f"{local}:") for local in LOCAL_HOSTS)}


def version() -> str:
    """A digest of the vendored files' names and sizes: a site re-copies them when it changes."""
    files = sorted(p for p in VENDOR.rglob("*") if p.is_file())
    listing = "\n".join(f"{p.relative_to(VENDOR)} {p.stat().st_size}" for p in files)
    return hashlib.sha256(listing.encode()).hexdigest()[:16]


def copy_vendor(directory: Path) -> None:
    """Copy the vendored assets into the site (``<site>/static/vendor/``)."""
    shutil.copytree(VENDOR, directory / SITE_VENDOR, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns(".DS_Store"))


def localize_site(directory: Path) -> int:
    """Rewrite the pages a site already has (written before it was offline, or by an older
    Tally) in place; ``localize`` is idempotent. Returns how many pages changed."""
    changed = 0
    for page in directory.rglob("*.html"):
        html = page.read_text(encoding="utf-8")
        new = localize(html, page.relative_to(directory).as_posix())
        if new != html:
            tmp = page.with_name(f".{page.name}.localize.tmp")
            tmp.write_text(new, encoding="utf-8")
            tmp.replace(page)
            changed += 1
    return changed
