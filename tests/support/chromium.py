"""A real headless Chromium (Debian's ``chromium`` package) for tests of pages: DOM, screenshot,
and the requests a page made (from Chromium's own network log).

``make system-deps`` installs it (as root) or prints the command. Tests that need it skip, with
the reason, only when it is absent.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--virtual-time-budget=5000"]  # lets the page's scripts run before the DOM is dumped
INSTALL = "sudo apt-get install -y chromium   # or: make system-deps (as root)"


def binary() -> str | None:
    found = os.environ.get("TALLY_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    return found if Path(found).is_file() and os.access(found, os.X_OK) else None


def require() -> str:
    """Chromium's path, or skip the test saying how to install it."""
    found = binary()
    if found is None:
        pytest.skip("headless Chromium not found ($TALLY_CHROMIUM, chromium on PATH, /usr/bin/chromium): "
                    f"install it: {INSTALL}")
    return found


def run(url: str, work: Path, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    """Chromium on ``url`` with a fresh profile under ``work``; ``args`` add e.g. --dump-dom."""
    profile = work / f"profile-{len(list(work.glob('profile-*')))}"
    cmd = [require(), *FLAGS, f"--user-data-dir={profile}", *args, url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=True)


def dump_dom(url: str, work: Path) -> str:
    """The DOM after the page's scripts ran."""
    return run(url, work, "--dump-dom").stdout


def screenshot(url: str, work: Path, png: Path, size: tuple[int, int] = (1400, 900)) -> Path:
    run(url, work, f"--screenshot={png}", f"--window-size={size[0]},{size[1]}")
    assert png.stat().st_size > 0
    return png


def requested(url: str, work: Path) -> tuple[str, list[str]]:
    """Load ``url`` and return (its DOM, every URL the *page* requested), from Chromium's net log
    (requests whose initiator is the page's origin: not Chromium's own background traffic)."""
    log = work / f"netlog-{len(list(work.glob('netlog-*')))}.json"
    dom = run(url, work, "--dump-dom", f"--log-net-log={log}").stdout
    text = log.read_text()
    try:
        data = json.loads(text)
    except ValueError:  # a log cut short: close its event list
        data = json.loads(text.rstrip().rstrip(",") + "]}")
    start = data["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(url))
    urls = [e["params"]["url"] for e in data["events"]
            if e["type"] == start and e.get("params", {}).get("initiator") == origin]
    return dom, urls


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002  (the base class's name)
        pass


@contextlib.contextmanager
def serve(directory: Path) -> Iterator[str]:
    """A local web server of ``directory`` on 127.0.0.1 (a free port); yields its base URL."""
    handler = functools.partial(_Quiet, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
