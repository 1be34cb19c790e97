"""A page in Debian's headless Chromium driven by Playwright (the ``dev`` extra), for tests that log
in, click and read a live DOM (iframes included). Playwright launches the system browser that
:mod:`support.chromium` finds: no browser download. The test skips, with the install command, only
when Chromium is absent."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from support import chromium

if TYPE_CHECKING:
    from playwright.sync_api import Page

# chromium.FLAGS less what Playwright sets itself (headless) or what only fits a one-shot dump
ARGS = [f for f in chromium.FLAGS if not f.startswith(("--headless", "--virtual-time-budget"))]


@contextlib.contextmanager
def page(size: tuple[int, int] = (1400, 1000), timeout_ms: float = 30_000) -> Iterator[Page]:
    """A fresh page (its own cookies) in a headless Chromium, closed afterwards."""
    executable = chromium.require()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=ARGS, headless=True)
        try:
            new = browser.new_page(viewport={"width": size[0], "height": size[1]})
            new.set_default_timeout(timeout_ms)
            yield new
        finally:
            browser.close()
