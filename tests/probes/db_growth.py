# ruff: noqa
# Reviewer probe (issue 8 review): not a test; run by hand as root, see the review report.
"""Probe: finished tasks are never pruned and are not counted against a tenant: one tenant grows the
store without bound (submit on its own socket, claim, post a 500 KiB result, repeat)."""

import os, sys, threading, time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))  # the repository
from tests.integration.hive_harness import Hive, Raw

hive = Hive()
try:
    hive.tenant("evil")
    hive.start()
    r = Raw(hive.socket("evil"), timeout=30)
    assert (
        r("POST", "/v1/agent/register", {"agent_id": "a1", "capabilities": [{"name": "echo", "version": "1"}]})[0]
        == 200
    )
    big_p = "p" * (250 * 1024)
    big_r = "r" * (500 * 1024)
    before = hive.db_path.stat().st_size
    t0 = time.monotonic()
    done = 0
    while time.monotonic() - t0 < float(sys.argv[1]):
        s, t = r("POST", "/v1/tasks", {"capability": "echo", "payload": big_p})
        if s != 201:
            print("submit", s, t)
            break
        r("POST", "/v1/agent/heartbeat", {"agent_id": "a1"})
        s, c = r("POST", "/v1/tasks/claim", {"agent_id": "a1", "wait": 2})
        if s != 200:
            print("claim", s, c)
            break
        s, _ = r(
            "POST", f"/v1/tasks/{c['id']}/result", {"agent_id": "a1", "lease": c["lease"], "ok": True, "result": big_r}
        )
        done += 1
    dt = time.monotonic() - t0
    wal = hive.db_path.with_name("colibri.db-wal")
    size = hive.db_path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)
    print(
        f"{done} tasks finished in {dt:.1f}s; store grew {(size - before) / 2**20:.0f} MiB ({(size - before) / 2**20 / dt:.1f} MiB/s), no limit hit"
    )
finally:
    hive.close()
