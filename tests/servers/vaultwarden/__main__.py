"""Run the test server by hand: ``python -m tests.servers.vaultwarden --port 8443 --cert-out ca.pem``.

Prints one JSON line (url, cert path, generated ids and API keys), then serves until
interrupted. Point bw at it with ``NODE_EXTRA_CA_CERTS=<cert> bw config server <url>``.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path

from . import seed
from .server import start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.servers.vaultwarden", description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: ephemeral)")
    parser.add_argument("--cert-out", type=Path, help="where to write the self-signed certificate (PEM)")
    parser.add_argument("--seed", type=Path, help="JSON seed file (format: tests/servers/vaultwarden/seed.py)")
    parser.add_argument(
        "--no-user-key-id-route", action="store_true", help="404 on the user-key-id route like Vaultwarden"
    )
    args = parser.parse_args(argv)

    server = start(port=args.port, cert_out=args.cert_out, user_key_id_route=not args.no_user_key_id_route)
    summary = seed.load(server.vault, json.loads(args.seed.read_text())) if args.seed else {}
    print(json.dumps({"url": server.url, "ca_cert_path": str(server.ca_cert_path), **summary}), flush=True)

    stopped = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopped.set())
    stopped.wait()
    server.stop()
    for entry in server.requests:
        print(entry, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
