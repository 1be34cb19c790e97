"""``python -m tally_local.sfsim``: serve the Salesforce simulator until SIGTERM/SIGINT.

Missing certificate/key files are generated (127.0.0.1, localhost and ``--host``); a missing
credentials file is generated with random secrets (including the ``admin_token`` of the
``/__admin`` fault-control API). ``--faults FILE`` starts with the faults in that JSON file
(see :class:`tally_local.sfsim.faults.Faults`). One log line per request goes to stderr;
passwords, tokens and query strings other than SOQL are never logged.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from pathlib import Path

from tally_local.sfsim.auth import write_credentials
from tally_local.sfsim.faults import Faults
from tally_local.sfsim.rest import MAX_BATCH_SIZE
from tally_local.sfsim.server import make_server
from tally_local.sfsim.tls import ensure_certificate

log = logging.getLogger("tally_local.sfsim")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tally_local.sfsim", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8443)
    parser.add_argument("--db", required=True, type=Path, help="SQLite store file")
    parser.add_argument("--cert", required=True, type=Path, help="PEM certificate chain (also the CA bundle)")
    parser.add_argument("--key", required=True, type=Path, help="PEM private key")
    parser.add_argument("--credentials", required=True, type=Path, help="credentials JSON file")
    parser.add_argument(
        "--page-size", type=int, default=MAX_BATCH_SIZE, help="query page size (default 2000)"
    )
    parser.add_argument("--session-ttl", type=float, default=7200.0, help="idle session lifetime, seconds")
    parser.add_argument(
        "--faults", type=Path, help="JSON file of faults to inject (tally_local.sfsim.faults.Faults)"
    )
    args = parser.parse_args(argv)
    try:
        faults = Faults.from_json(args.faults.read_text()) if args.faults else None
    except (OSError, ValueError) as exc:
        parser.error(f"--faults {args.faults}: {exc}")

    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s sfsim %(message)s")
    hosts = tuple(
        dict.fromkeys(h for h in ("127.0.0.1", "localhost", args.host) if h not in ("0.0.0.0", "::"))
    )
    if ensure_certificate(args.cert, args.key, hosts):
        log.info("generated TLS certificate %s for %s", args.cert, ", ".join(hosts))
    if not args.credentials.exists():
        write_credentials(args.credentials)
        log.info("generated credentials file %s", args.credentials)

    server = make_server(
        args.db,
        args.credentials,
        args.host,
        args.port,
        args.page_size,
        args.cert,
        args.key,
        args.session_ttl,
        faults=faults,
    )

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    log.info("serving %s (db %s, page size %d)", server.base_url, args.db, args.page_size)
    if faults is not None:
        log.info("faults: %s", json.dumps(faults.to_dict(), separators=(",", ":")))
    if server.store.schema_error:
        log.warning("store needs reset(): %s", server.store.schema_error)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        log.info("stopping")
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
