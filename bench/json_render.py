"""``--json`` renderers on N tenant records (issue 10): the stdlib, colibri's hand-written one, and
the orjson path with its checks, in one process, each the best of --runs.

    .venv/bin/python bench/json_render.py [--runs 7] [--tenants 10000]

The records are built the way ``list-tenants`` builds them (``tenant_public_row`` over rows like
bench/cli_startup.py's seed), and every renderer's output is checked equal to
``json.dumps(indent=2, sort_keys=True)`` before it is timed.  Prints a Markdown table.
"""

import argparse
import json
import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from colibri.cli import output
from colibri.store.models import tenant_public_row


def records(count: int) -> list[dict[str, Any]]:
    base = datetime(2026, 1, 1)
    statuses = ("registered", "active", "stopped", "failed")
    rows = []
    for i in range(count):
        row: dict[str, Any] = dict.fromkeys(
            ("backend", "jail_root", "ip_address", "template", "spawn_step", "secrets_error", "uid_base"), None
        )
        row.update(
            tenant_id=f"t{i:05d}x", jail_name=f"t{i:05d}x", collection_name=f"t{i:05d}x", collection_id=None,
            host="bench-host", status=statuses[i % 4], created_at=base + timedelta(seconds=i),
            updated_at=base + timedelta(seconds=i), last_error="spawn failed: bench" if i % 4 == 3 else None,
            adopted=False, capabilities='[{"name": "echo", "version": "1"}]' if i % 2 else None,
            secrets_status="unknown", secrets_changed_at=None, secrets_checked_at=None,
        )  # fmt: skip
        rows.append(tenant_public_row(row))
    return rows


def best(fn: Callable[[], Any], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--tenants", type=int, default=10_000)
    args = parser.parse_args()
    document = {"ok": True, "data": records(args.tenants)}
    expected = json.dumps(document, indent=2, sort_keys=True)
    fast = output._orjson_dumps(document)
    assert output._pretty(document) == expected and fast == expected, "a renderer is not the stdlib's bytes"
    cases = {
        "stdlib `json.dumps(indent=2, sort_keys=True)`": lambda: json.dumps(document, indent=2, sort_keys=True),
        "colibri's hand-written renderer (`_pretty`)": lambda: output._pretty(document),
        "the type check alone (`_plain`)": lambda: output._plain(document),
        "orjson path: check + orjson + ASCII check (`_orjson_dumps`)": lambda: output._orjson_dumps(document),
    }
    print(f"{args.tenants:,} tenant records, {len(expected):,} bytes; best of {args.runs}\n")
    print("| renderer | time |\n|---|---|")
    for name, fn in cases.items():
        print(f"| {name} | {best(fn, args.runs):.1f} ms |")


if __name__ == "__main__":
    main()
