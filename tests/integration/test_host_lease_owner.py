"""One owner per host name, and ``hosts remove`` that sticks (review R7, R13), with real parts:
``colibri daemon`` processes and the ``colibri`` CLI on one real PostgreSQL server.

* A second daemon configured with a live host's name waits one lease out, then exits 5 with one
  line; the live daemon keeps its term.  The same host's daemon killed (-9) and started again
  takes the lease at once with the term it kept in its run directory.
* ``colibri hosts remove`` of a host whose daemon is live exits 5 with what to do; once that
  daemon stood still past its lease the removal is done, and the daemon, resumed, stops by itself
  (exit 4) without bringing the row back, nor does starting it again; enrolled again, it rejoins.
"""

import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest
from sqlalchemy import text

from colibri.store.db import Store
from tests.integration.fleet import FLEET_ENV
from tests.integration.hive_harness import Hive, wait_until
from tests.servers.postgres import PostgresServer

pytestmark = [pytest.mark.integration, pytest.mark.postgres]
LEASE = {"COLIBRI_HOST_LEASE_SECONDS": "2", "COLIBRI_HOST_LEASE_GRACE": "1"}
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMD"


@pytest.fixture(name="hives")
def hives_fixture(postgres_server: PostgresServer) -> Iterator[tuple[str, list[Hive]]]:
    url = postgres_server.create_database()
    made: list[Hive] = []
    try:
        yield url, made
    finally:
        for hive in made:
            if hive.daemon is not None and hive.daemon.poll() is None:
                hive.daemon.send_signal(signal.SIGCONT)
            hive.close()


def _hive(url: str, made: list[Hive], name: str) -> Hive:
    hive = Hive({**FLEET_ENV, **LEASE, "COLIBRI_HOST": name, "COLIBRI_DATABASE_URL": url})
    made.append(hive)
    return hive


def _lapsed(url: str, name: str) -> bool:
    """Has the host's lease ended, on the database's clock?"""
    store = Store(url)
    try:
        with store.connect() as conn:
            query = text("SELECT lease_expires_at < extract(epoch FROM clock_timestamp()) FROM hosts WHERE name = :n")
            return bool(conn.execute(query, {"n": name}).scalar())
    finally:
        store.close()


def _lease(hive: Hive) -> tuple[str, int]:
    fleet = hive.admin.health()["fleet"]
    return str(fleet["lease"]), int(fleet["term"])


def test_a_second_daemon_under_a_live_hosts_name_exits_5_and_a_crashed_one_restarts_at_once(
    hives: tuple[str, list[Hive]],
) -> None:
    url, made = hives
    owner, imposter = _hive(url, made, "a"), _hive(url, made, "a")
    owner.start()
    assert _lease(owner) == ("held", 1)
    refused = subprocess.run([sys.executable, "-m", "colibri", "daemon"], env=imposter.env, capture_output=True,
                             text=True, timeout=60)  # fmt: skip
    last = refused.stderr.strip().splitlines()[-1]
    assert refused.returncode == 5, refused.stderr
    assert last.startswith("colibri: another colibri daemon holds host a's lease (term 1,"), last
    assert "Traceback" not in refused.stderr
    assert _lease(owner) == ("held", 1)  # never taken: the owner renewed all along
    owner.stop(signal.SIGKILL)  # a crash: the lease stays live for up to 2 s, the term is in the run dir
    owner.start()
    assert _lease(owner) == ("held", 2)
    assert "waiting" not in owner.log()  # it did not wait the lease out: its own term was its proof


def test_hosts_remove_is_refused_while_the_daemon_is_live_and_sticks_once_it_stood_still(
    hives: tuple[str, list[Hive]],
) -> None:
    url, made = hives
    c = _hive(url, made, "c")
    c.colibri("hosts", "add", "c", "--ssh", "root@192.0.2.12", "--host-key", KEY)
    c.start()
    refused = c.colibri("hosts", "remove", "c", check=False)
    assert refused.returncode == 5, refused.stderr
    assert "host c's daemon holds a live lease" in refused.stderr and "stop it first" in refused.stderr
    assert c.daemon is not None
    c.daemon.send_signal(signal.SIGSTOP)  # frozen (or cut off): its lease lapses
    wait_until(lambda: _lapsed(url, "c"), 30)
    removed = c.colibri("hosts", "remove", "c", check=False)
    assert removed.returncode == 0, removed.stderr
    c.daemon.send_signal(signal.SIGCONT)
    code = c.daemon.wait(30)
    c.daemon = None
    assert code == 4, c.log()
    assert "host c was removed from the hive (colibri hosts remove); this daemon stops" in c.log()
    listed = c.colibri("hosts", "list", "--json")
    assert '"c"' not in listed.stdout, listed.stdout  # not brought back by a renewal
    again = subprocess.run([sys.executable, "-m", "colibri", "daemon"], env=c.env, capture_output=True, text=True,
                           timeout=60)  # fmt: skip  # rc.d's daemon(8) -r starts it again
    assert again.returncode == 4 and "host c was removed from the hive" in again.stderr, again.stderr
    assert '"c"' not in c.colibri("hosts", "list", "--json").stdout  # nor by a start
    c.colibri("hosts", "add", "c", "--ssh", "root@192.0.2.12", "--host-key", KEY)  # enrolled again: it rejoins
    c.start()
    assert c.admin.health()["fleet"]["lease"] == "held"
