# ruff: noqa
# Reviewer probe (issue 8 review): not a test; run by hand as root, see the review report.
"""Probe: the log rate limit is per message template, fleet-wide: one tenant spends a cause's 20
lines and another tenant's lines of that cause vanish from the log for the interval."""

import os, sys, time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))  # the repository
from tests.integration.hive_harness import Hive, Raw

hive = Hive()
try:
    for t in ("evil", "good"):
        hive.tenant(t)
    hive.start()
    evil, good = Raw(hive.socket("evil")), Raw(hive.socket("good"))
    for i in range(25):
        evil("POST", "/v1/agent/register", {"agent_id": f"e{i}", "capabilities": []})
        evil("POST", "/v1/agent/deregister", {"agent_id": f"e{i}"})
    print(good("POST", "/v1/agent/register", {"agent_id": "victim-agent", "capabilities": []})[0])
    print(good("POST", "/v1/agent/deregister", {"agent_id": "victim-agent"})[0])
    time.sleep(1.5)
    log = hive.log()
    print("evil lines:", log.count("agent evil/"), "| good's register/deregister logged:", "good/victim-agent" in log)
finally:
    hive.close()
