# ruff: noqa
# Reviewer probe (issue 8 review): not a test; run by hand as root, see the review report.
"""Probe: 1 MiB bodies of shallow brackets cost ~80 ms of the event loop each (parse_json's _depth
scan in pure Python); one tenant within its request rate stalls the admin socket and others."""

import os, socket, sys, threading, time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))  # the repository
from tests.integration.hive_harness import Hive, Raw
from colibri.adapters.daemon_client import DaemonClient

hive = Hive()
try:
    for t in ("evil", "good"):
        hive.tenant(t)
    hive.start()
    good = Raw(hive.socket("good"), timeout=60)
    assert good("POST", "/v1/agent/register", {"agent_id": "g1", "capabilities": []})[0] == 200
    admin = DaemonClient(hive.root / "run" / "admin.sock", timeout=60)

    def lat(fn):
        t = time.monotonic()
        fn()
        return time.monotonic() - t

    print(
        "baseline: health %.3fs heartbeat %.3fs"
        % (
            max(lat(admin.health) for _ in range(5)),
            max(lat(lambda: good("POST", "/v1/agent/heartbeat", {"agent_id": "g1"})) for _ in range(5)),
        )
    )
    body = ("[" + ",".join(["[]"] * 340000) + "]").encode()
    req = b"POST /v1/agent/heartbeat HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    stop = threading.Event()
    sent = [0]

    def flooder():
        while not stop.is_set():
            s = socket.socket(socket.AF_UNIX)
            s.settimeout(60)
            try:
                s.connect(str(hive.socket("evil")))
                while not stop.is_set():
                    s.sendall(req)
                    s.recv(65536)
                    sent[0] += 1
            except OSError:
                pass
            finally:
                s.close()

    ths = [threading.Thread(target=flooder, daemon=True) for _ in range(int(sys.argv[1]) if len(sys.argv) > 1 else 4)]
    for th in ths:
        th.start()
    time.sleep(3)
    h = [lat(admin.health) for _ in range(5)]
    g = [lat(lambda: good("POST", "/v1/agent/heartbeat", {"agent_id": "g1"})) for _ in range(5)]
    print(
        f"during flood: health max {max(h):.3f}s, good heartbeat max {max(g):.3f}s; evil requests answered: {sent[0]}"
    )
    stop.set()
finally:
    hive.close()
