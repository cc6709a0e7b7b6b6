"""A tenant moved to another host (review R11), against real daemons on a real PostgreSQL server:
its mother's agent id registers on the new host at once, what the old agent held is queued again,
and the old host's daemon gives the tenant's agent id to nobody."""

from collections.abc import Iterator

import pytest

from colibri.services.lifecycle.placement import Placement
from colibri.store.db import Store
from tests.integration.fleet import Agent, Fleet
from tests.integration.hive_harness import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.postgres]


@pytest.fixture(name="fleet", scope="module")
def fleet_fixture(postgres_server) -> Iterator[Fleet]:
    fleet = Fleet(postgres_server.create_database(), ["a", "b"])
    try:
        fleet.start()
        yield fleet
    finally:
        fleet.close()


def test_a_moved_tenants_mother_registers_on_its_new_host_at_once(fleet: Fleet) -> None:
    fleet.tenant("mover", "a")
    old = Agent(fleet["a"].socket("mover"), "mover-1")
    new = Agent(fleet["b"].socket("mover"), "mover-1")
    try:
        old.register(heartbeat=False)
        task = fleet["a"].admin.submit("echo", {"n": 1}, tenant="mover")
        status, lease = wait_until(lambda: (got := old.claim(1))[0] == 200 and got)
        assert lease["id"] == task["id"]
        # move-tenant: its jail destroyed on a (the tenant back to registered), then rehomed to b
        fleet.sql("UPDATE tenants SET status = 'registered' WHERE tenant_id = 'mover'")
        store = Store(fleet.url)
        try:
            Placement(store, "a", None).rehome("mover", "b")
        finally:
            store.close()
        fleet.sql("UPDATE tenants SET status = 'active' WHERE tenant_id = 'mover'")  # spawned on b
        fleet["b"].admin.open_tenant_socket("mover")
        new.register(heartbeat=False)  # before the fix: 409 until a found its agent lost (~90 s)
        state, attempts = fleet.sql("SELECT state, attempts FROM tasks WHERE id = :i", i=task["id"])[0]
        assert (state, attempts) == ("queued", 0)  # what the old agent held, given back by the move
        status, again = wait_until(lambda: (got := new.claim(1))[0] == 200 and got)
        assert again["id"] == task["id"] and again["host"] == "b"
        assert old.result(lease)[0] == 409  # the old host's late answer is refused
        status, body = old.call("POST", "/v1/agent/register", {"agent_id": "mover-1", "capabilities": []})
        assert status == 403, (status, body)  # the old host's socket takes no identity of a moved tenant
        assert new.result(again)[0] == 200
        rows = fleet.sql("SELECT host, state FROM agents WHERE key = 'mover/mover-1'")
        assert [tuple(r) for r in rows] == [("b", "active")]
    finally:
        old.close()
        new.close()
