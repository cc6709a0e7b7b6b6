"""Issue 12 in a hive: a tenant registered through the fleet harness is recorded as its host's colibri
records it (in its log, with its entry key), so that host's daemon signs it (review doubt (e): the
harness wrote the entry MAC-less into the log of this machine's node name, a host no daemon runs as,
so no checkpoint ever covered it).
Real parts: the PostgreSQL server of tests/servers/postgres.py and a real daemon per host."""

import pytest

from tests.integration.fleet import Fleet
from tests.integration.hive_harness import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.postgres]


def test_a_fleet_tenant_is_signed_by_its_hosts_daemon(postgres_server) -> None:  # type: ignore[no-untyped-def]
    fleet = Fleet(postgres_server.create_database(), ["a", "b"], extra_env={"COLIBRI_AUDIT_CHECKPOINT_SECONDS": "0.5"})
    try:
        fleet.start()
        fleet.tenant("acme", "a")
        fleet.tenant("bravo", "b")
        found = fleet.sql("SELECT tenant, host, mac IS NOT NULL FROM audit_entries WHERE action = 'tenant.register'")
        assert sorted(tuple(row) for row in found) == [("acme", "a", True), ("bravo", "b", True)], found
        for host in ("a", "b"):
            (head,) = fleet.sql("SELECT seq FROM audit_heads WHERE host = :h", h=host)[0]

            def signed(host: str = host, head: int = head) -> bool:
                rows = fleet.sql("SELECT max(size) FROM audit_checkpoints WHERE host = :h", h=host)
                return bool(rows and rows[0][0] is not None and rows[0][0] >= head)

            wait_until(signed, timeout=20)
            assert "refusing to sign" not in fleet[host].log()
    finally:
        fleet.close()
