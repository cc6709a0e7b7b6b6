"""Review R (issue 11): a hostile tenant agent against a real daemon on a real PostgreSQL server.
Each test is a finding: strict xfail until it is fixed."""

from collections.abc import Iterator

import pytest

from tests.integration.fleet import Agent, Fleet
from tests.integration.hive_harness import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.postgres]


@pytest.fixture(name="fleet", scope="module")
def fleet_fixture(postgres_server) -> Iterator[Fleet]:
    fleet = Fleet(postgres_server.create_database(), ["a"])
    try:
        fleet.start()
        fleet.tenant("acme", "a")
        yield fleet
    finally:
        fleet.close()


def test_r10_a_result_with_a_huge_exit_status_is_a_400_not_an_outbox_record(fleet: Fleet) -> None:
    agent = Agent(fleet["a"].socket("acme"), "m1")
    try:
        agent.register()
        fleet["a"].admin.submit("echo", {"n": 1}, tenant="acme")
        status, lease = wait_until(lambda: (got := agent.claim(1))[0] == 200 and got)
        status, body = agent.result(lease, exit_status=2**31)
        health = fleet["a"].admin.health()
        assert (status, health["fleet"]["outbox"]) == (400, 0), (status, body, health)  # fails: 202, outbox 1
    finally:
        agent.close()


def test_r10_a_result_whose_error_holds_a_nul_is_never_an_outbox_record(fleet: Fleet) -> None:
    agent = Agent(fleet["a"].socket("acme"), "m2")
    try:
        agent.register()
        fleet["a"].admin.submit("echo", {"n": 2}, tenant="acme")
        _, lease = wait_until(lambda: (got := agent.claim(1))[0] == 200 and got)
        status, body = agent.result(lease, ok=False, error="boom\u0000")
        assert status in (200, 400), (status, body)  # fails: 202 {"outbox": true}, the host degraded
    finally:
        agent.close()


def test_r10_a_register_with_a_nul_is_a_400_that_names_no_database(fleet: Fleet) -> None:
    agent = Agent(fleet["a"].socket("acme"), "m4")
    try:
        body = {"agent_id": "m4", "capabilities": [], "mother_version": "1\u0000"}
        status, answer = agent.call("POST", "/v1/agent/register", body)
        assert "postgresql" not in str(answer) and "127.0.0.1" not in str(answer), answer  # fails: URL to the jail
        assert status == 400, (status, answer)
    finally:
        agent.close()
