"""The daemon killed between the decision and the spawn (issue 14): a real process decides (and
binds one of its two grants to a child tenant that exists), is SIGKILLed before ``use``, and the
sweep of another process converges: the unbound grant released a minute later, the bound one
used once its spawn's time is over, nothing leaked."""

import os
import signal
import subprocess
import sys
import time

import pytest

from colibri.audit import origin
from colibri.services.policy.admin import PolicyAdmin, PolicyChange
from colibri.services.policy.service import BIND_TTL, SpawnPolicyService
from tests.conftest import REPO
from tests.unit.daemon.hive_world import active_tenants

pytestmark = pytest.mark.integration

TTL = 300.0
SPAWNER = """
import os
import signal
import sys
from colibri.audit import origin
from colibri.services.policy.service import ChildRequest, SpawnPolicyService
from colibri.store.db import Store

store = Store(sys.argv[1])
with origin.acting("tenant:queen", host="h"):
    service = SpawnPolicyService(store, reservation_ttl=float(sys.argv[2]))
    first = service.decide(ChildRequest("queen", "a1"), actor="agent:queen/a1")
    second = service.decide(ChildRequest("queen", "a2"), actor="agent:queen/a2")
    service.bind(first.reservation, "worker")
print(first.reservation, second.reservation, flush=True)
os.kill(os.getpid(), signal.SIGKILL)  # the spawn would run here: killed first, no cleanup of any kind
"""


def test_a_spawner_killed_before_use_converges(db_url: str) -> None:
    store = active_tenants(db_url, {"queen": "h", "worker": "h"})
    try:
        with origin.acting("operator:test", host="h"):
            PolicyAdmin(store).set("queen", PolicyChange(allowed=True, max_children=2))
        spawner = subprocess.run(
            [sys.executable, "-c", SPAWNER, db_url, str(TTL)],
            cwd=REPO, capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)},
        )  # fmt: skip
        assert spawner.returncode == -signal.SIGKILL, spawner.stderr[-2000:]
        bound, lone = spawner.stdout.split()
        with origin.acting("daemon", host="h"):
            now = SpawnPolicyService(store)
            assert now.sweep() == 0  # not expired yet: a live spawn keeps its place
            soon = SpawnPolicyService(store, clock=lambda: time.time() + BIND_TTL + 5)
            assert soon.sweep() == 1  # never bound: its place is free a minute after the kill
            assert soon.reservation(lone).state == "released" and soon.reservation(bound).state == "reserved"
            later = SpawnPolicyService(store, clock=lambda: time.time() + TTL + 5)
            assert later.sweep() == 1 and later.sweep() == 0
            assert later.reservation(bound).state == "used" and later.reservation(bound).child == "worker"
            assert later.reservation(lone).state == "released"
        shown = PolicyAdmin(store).show("queen")
        assert shown["children"] == 1 and PolicyAdmin(store).show("worker")["parent"] == "queen"
    finally:
        store.close()
