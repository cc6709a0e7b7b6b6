# ruff: noqa
# Reviewer probe (issue 8 review): not a test; run by hand as root, see the review report.
import os, sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))  # the repository
from tests.integration.hive_harness import Hive, Raw, raw_exchange

hive = Hive()
try:
    hive.tenant("evil")
    hive.start()
    r = Raw(hive.socket("evil"))
    admin = Raw(hive.root / "run" / "admin.sock")
    cases = {
        "payload 1e400": b'{"capability":"echo","payload":1e400}',
        "payload -1e400": b'{"capability":"echo","payload":[-1e999]}',
        "payload 1.5e308x10": b'{"capability":"echo","payload":1e309}',
    }
    for name, body in cases.items():
        print(name, "agent socket:", r("POST", "/v1/tasks", raw=body))
        print(name, "admin socket:", admin("POST", "/v1/tasks", raw=body.replace(b'"echo"', b'"echo","tenant":"evil"')))
    print(r("POST", "/v1/agent/register", {"agent_id": "a1", "capabilities": [{"name": "echo", "version": "1"}]}))
    s, t = r("POST", "/v1/tasks", {"capability": "echo", "payload": 1})
    s, c = r("POST", "/v1/tasks/claim", {"agent_id": "a1", "wait": 2})
    print("claim", s)
    print(
        "result 1e400:",
        r(
            "POST",
            f"/v1/tasks/{c['id']}/result",
            raw=('{"agent_id":"a1","lease":"%s","ok":true,"result":1e400}' % c["lease"]).encode(),
        ),
    )
    print(
        "exit_status 2**70:",
        r(
            "POST",
            f"/v1/tasks/{c['id']}/result",
            raw=('{"agent_id":"a1","lease":"%s","ok":true,"exit_status":9223372036854775807}' % c["lease"]).encode(),
        ),
    )
    log = hive.log()
    print("Traceback in log:", "Traceback" in log, "| internal error lines:", log.count("internal error"))
    print("\n".join(l for l in log.splitlines() if "rror" in l)[:1500])
finally:
    hive.close()
