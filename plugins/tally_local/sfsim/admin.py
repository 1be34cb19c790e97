"""The simulator's fault-control API, for tests that run it out of process.

* ``GET|PUT /__admin/faults`` - the current :class:`tally_local.sfsim.faults.Faults` as JSON;
  ``PUT`` replaces them (and resets the counters)
* ``GET /__admin/counters`` - API calls seen and admitted, usage and its daily maximum
* ``POST /__admin/reset`` - reset the counters

Only with ``X-Sfsim-Admin-Token: <admin_token>`` (403 otherwise); disabled when the
credentials have no ``admin_token``. These are not API calls: no fault applies to them.
"""

from __future__ import annotations

import json
import logging
import re
from typing import TYPE_CHECKING

from tally_local.sfsim.auth import same_secret
from tally_local.sfsim.faults import Faults

if TYPE_CHECKING:
    from tally_local.sfsim.handler import Handler

log = logging.getLogger("tally_local.sfsim")

ADMIN_HEADER = "X-Sfsim-Admin-Token"


def admin_faults(h: Handler, match: re.Match[str]) -> None:
    if not _authorised(h):
        return
    if h.command == "PUT":
        try:
            h.server.set_faults(Faults.from_json(h.body.decode(errors="replace") or "{}"))
        except (ValueError, TypeError) as exc:
            h.reply(400, {"error": str(exc)})
            return
        log.info("faults set: %s", json.dumps(h.server.faults.to_dict(), separators=(",", ":")))
    h.reply(200, h.server.faults.to_dict())


def admin_counters(h: Handler, match: re.Match[str]) -> None:
    if _authorised(h):
        h.reply(200, h.server.counters())


def admin_reset(h: Handler, match: re.Match[str]) -> None:
    if _authorised(h):
        h.server.reset_counters()
        h.reply(200, h.server.counters())


def _authorised(h: Handler) -> bool:
    """True if the request carries the admin token; otherwise answers 403 and returns False."""
    expected = h.server.credentials.admin_token
    given = h.headers.get(ADMIN_HEADER, "")
    if not expected:
        h.reply(403, {"error": "admin API disabled: the credentials have no admin_token"})
        return False
    if not given or not same_secret(given, expected):
        h.reply(403, {"error": f"missing or wrong {ADMIN_HEADER} header"})
        return False
    return True
