# ruff: noqa
# Reviewer probe (issue 8 review): not a test; run by hand as root, see the review report.
"""Probe: one tenant at its queue limits keeps the daemon's single DB thread busy; measure the
admin socket and another tenant meanwhile."""

import os, json, sys, threading, time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))  # the repository
from tests.integration.hive_harness import Hive, Raw
from colibri.adapters.daemon_client import DaemonClient

mode = sys.argv[1] if len(sys.argv) > 1 else "submit"
hive = Hive()
try:
    for t in ("evil", "good"):
        hive.tenant(t)
    hive.start()
    evil = Raw(hive.socket("evil"), timeout=30)
    good = Raw(hive.socket("good"), timeout=30)
    big = "x" * (255 * 1024)
    t0 = time.monotonic()
    n = 0
    while True:
        s, b = evil("POST", "/v1/tasks", {"capability": "echo", "payload": big})
        if s != 201:
            print("fill stopped:", s, str(b)[:160])
            break
        n += 1
    print(f"filled {n} tasks in {time.monotonic() - t0:.1f}s")
    first_id = 1

    def lat(fn):
        t = time.monotonic()
        fn()
        return time.monotonic() - t

    admin = DaemonClient(hive.root / "run" / "admin.sock", timeout=30)

    def base():
        h = [lat(admin.health) for _ in range(5)]
        g = [lat(lambda: good("POST", "/v1/tasks", {"capability": "echo", "payload": 1})) for _ in range(5)]
        return max(h), max(g)

    print("baseline max health %.3fs, good submit %.3fs" % base())
    stop = threading.Event()
    counts = {"sent": 0, "codes": {}}

    def flooder():
        c = Raw(hive.socket("evil"), timeout=30)
        while not stop.is_set():
            try:
                if mode == "submit":
                    s, _ = c("POST", "/v1/tasks", {"capability": "echo", "payload": "y" * 1000})
                else:
                    s, _ = c("GET", f"/v1/tasks/{first_id}")
            except Exception as e:
                s = type(e).__name__
            counts["sent"] += 1
            counts["codes"][s] = counts["codes"].get(s, 0) + 1

    threads = [threading.Thread(target=flooder) for _ in range(int(sys.argv[2]) if len(sys.argv) > 2 else 8)]
    for th in threads:
        th.start()
    time.sleep(3)
    t = time.monotonic()
    worst_h = worst_g = 0.0
    for _ in range(5):
        worst_h = max(worst_h, lat(admin.health))
        worst_g = max(worst_g, lat(lambda: good("POST", "/v1/tasks", {"capability": "echo", "payload": 1})))
    print(
        f"during flood ({mode}): max health {worst_h:.3f}s, good submit {worst_g:.3f}s; evil sent {counts['sent']} in {time.monotonic() - t + 3:.1f}s codes {counts['codes']}"
    )
    stop.set()
    for th in threads:
        th.join(60)
    print("log tail:", hive.log()[-600:])
finally:
    hive.close()
