# ruff: noqa
# Reviewer probe (issue 8 review): not a test; run by hand as root, see the review report.
import os, json, sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))  # the repository
from tests.integration.hive_harness import Hive, Raw

hive = Hive()
try:
    for t in ("evil",):
        hive.tenant(t)
    hive.start()
    evil = Raw(hive.socket("evil"))
    ESC = "\x1b]0;pwned\x07\x1b[2J\u202e\x9b31m"
    print(
        evil(
            "POST",
            "/v1/agent/register",
            {"agent_id": "a1", "capabilities": [{"name": "echo", "version": "1"}], "mother_version": ESC[:32]},
        )
    )
    s, t = evil("POST", "/v1/tasks", {"capability": "echo", "payload": {"k" + ESC: ESC}})
    print(s)
    s, c = evil("POST", "/v1/tasks/claim", {"agent_id": "a1", "wait": 1})
    print(
        s,
        evil(
            "POST",
            f"/v1/tasks/{c['id']}/result",
            {"agent_id": "a1", "lease": c["lease"], "ok": False, "error": ESC + "\nFAKE LINE", "result": {ESC: [ESC]}},
        )[0],
    )
    for args in (["agents"], ["tasks"], ["task", str(c["id"])], ["show-tenant", "evil"], ["list-tenants"]):
        r = hive.colibri(*args, check=False)
        bad = [ch for ch in r.stdout + r.stderr if ch in "\x1b\x07\x9b\u202e"]
        print(
            args,
            "rc",
            r.returncode,
            "raw control chars:",
            len(bad),
            "| newline-forged:",
            "FAKE LINE" in r.stdout and "\\nFAKE" not in r.stdout,
        )
    log = hive.log()
    print("daemon log raw ESC:", "\x1b" in log)
finally:
    hive.close()
