"""Fair lanes (review R14) against real daemons on a real PostgreSQL server: one tenant's backlog,
submitted on its host, does not hold another tenant's task on a shared lane served by a third."""

from collections.abc import Iterator

import pytest

from tests.integration.fleet import Agent, Fleet
from tests.integration.hive_harness import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.postgres]


@pytest.fixture(name="fleet", scope="module")
def fleet_fixture(postgres_server) -> Iterator[Fleet]:
    fleet = Fleet(postgres_server.create_database(), ["a", "b", "c"])
    try:
        fleet.start()
        fleet.tenant("acme", "a")
        fleet.tenant("bolt", "b")
        fleet.lane("linux")
        yield fleet
    finally:
        fleet.close()


def test_a_lane_on_another_host_takes_the_tenants_in_turn(fleet: Fleet) -> None:
    backlog = [fleet["a"].admin.submit("echo", {"n": n}, tenant="acme")["id"] for n in range(30)]
    bolt = fleet["b"].admin.submit("echo", {"n": 0}, tenant="bolt")["id"]
    lane = Agent(fleet.lane_socket("c", "linux"), "x1")
    try:
        lane.register(heartbeat=False)
        order = []
        for _ in range(31):
            _, lease = wait_until(lambda: (got := lane.claim(1))[0] == 200 and got)
            order.append(lease["id"])
            assert lane.result(lease)[0] == 200
        assert order[:3] == [backlog[0], bolt, backlog[1]]  # before the fix: bolt's after all 30 of acme's
        assert sorted(order) == sorted([*backlog, bolt])  # each once
        rows = fleet.sql("SELECT count(*) FROM tasks WHERE state = 'succeeded' AND host = 'c'")
        assert rows[0][0] == 31
    finally:
        lane.close()
