"""One clock, one owner, removal that sticks (review R3, R7, R13) on a real store, SQLite and
PostgreSQL: the rules (HostRules, HostService.remove), the daemon's side (HostLease: the term it
keeps in its run directory) and the database's clock itself (colibri/store/clock.py)."""

import asyncio
import json
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from colibri.daemon.hostlease import LEASE_FILE, REMOVED_FILE
from colibri.daemon.server import Daemon
from colibri.errors import Conflict, HostNotFound, StateConflict
from colibri.services.hive.rules import Scope
from colibri.services.hosts.enrol import HostService
from colibri.settings import Settings
from colibri.store.clock import DatabaseClock
from colibri.store.db import Store
from colibri.store.models import Host, Task
from tests.unit.daemon.test_host_lease import (  # noqa: F401 (fixtures)
    ECHO,
    GRACE,
    LEASE,
    Clock,
    _hive,
    _ref,
    _row,
    clock_fixture,
    store_fixture,
)

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMD"


def _enrol(store: Store, clock: Clock, name: str) -> HostService:
    hosts = HostService(store, clock=clock)
    hosts.add(name, "root@192.0.2.12", [KEY], None)
    return hosts


# ---- R7: one daemon per host name ---------------------------------------------------------------


def test_a_second_daemon_under_a_live_hosts_name_is_refused_and_says_how_long(store: Store, clock: Clock) -> None:
    real, imposter = _hive(store, clock, "a"), _hive(store, clock, "a")
    real.hosts.start()
    clock.now += 5
    with pytest.raises(StateConflict, match=r"another colibri daemon holds host a's lease \(term 1, 25 s left\)"):
        imposter.hosts.start()
    assert imposter.hosts.lease.term == 0 and not imposter.hosts.trusted()
    assert (_row(store, Host, "a").lease_term, real.hosts.renew()) == (1, (True, []))


def test_a_restart_after_a_crash_takes_the_lease_at_once_with_the_term_it_kept(store: Store, clock: Clock) -> None:
    crashed = _hive(store, clock, "a")
    crashed.hosts.start()  # then kill -9: no stop, the lease is live for 30 s more
    again = _hive(store, clock, "a")
    again.hosts.start(prior_term=crashed.hosts.lease.term)
    assert again.hosts.lease.term == 2 and again.hosts.trusted()
    with pytest.raises(StateConflict):  # the crashed one's term is no proof any more
        _hive(store, clock, "a").hosts.start(prior_term=1)


def test_a_daemon_starts_once_the_other_lease_lapsed_and_the_old_one_then_stops(store: Store, clock: Clock) -> None:
    old, new = _hive(store, clock, "a"), _hive(store, clock, "a")
    old.hosts.start()
    clock.now += LEASE + 0.5  # old stood still past its lease (no proof of its term: a reboot)
    assert new.hosts.start() == [] and new.hosts.lease.term == 2
    with pytest.raises(StateConflict, match="another colibri daemon holds host a's lease"):
        old.hosts.renew()  # old comes back: its term is gone, the lease is new's, it must not take it
    assert not old.hosts.trusted() and old.claim(_ref({"key": "acme/m1"})) is None
    assert _row(store, Host, "a").lease_term == 2 and new.hosts.renew() == (True, [])


def test_a_host_declared_lost_still_takes_a_new_term_when_it_comes_back(store: Store, clock: Clock) -> None:
    a, b = _hive(store, clock, "a"), _hive(store, clock, "b")
    a.hosts.start()
    b.hosts.start()
    for _ in range(5):  # a is frozen; b renews, then declares it lost
        clock.now += LEASE / 3
        b.hosts.renew()
    [lost] = b.hosts.rescue()
    assert lost.host == "a"
    assert a.hosts.renew() == (False, []) and a.hosts.lease.term == 2 and a.hosts.trusted()


# ---- R13: hosts remove ----------------------------------------------------------------------------


def test_hosts_remove_of_a_live_host_is_refused_with_what_to_do(store: Store, clock: Clock) -> None:
    hosts = _enrol(store, clock, "c")
    c = _hive(store, clock, "c")
    c.hosts.start()
    clock.now += 12
    with pytest.raises(Conflict, match=r"host c's daemon holds a live lease \(18 s left\): stop it first") as refused:
        hosts.remove("c")
    assert refused.value.exit_code == 5
    assert c.hosts.renew() == (True, []) and _row(store, Host, "c").address == "192.0.2.12"
    c.hosts.stop()  # service colibri stop on c: the row says down
    assert hosts.remove("c")["name"] == "c"
    with store.session() as session:
        assert session.get(Host, "c") is None


def test_removing_a_host_whose_daemon_stood_still_sticks_when_it_comes_back(store: Store, clock: Clock) -> None:
    hosts = _enrol(store, clock, "c")
    c = _hive(store, clock, "c")
    c.hosts.start()
    clock.now += LEASE + 1  # c is frozen (or cut off) past its lease: the operator removes it
    hosts.remove("c")
    with pytest.raises(HostNotFound):  # c comes back: its renewal does not bring the row back
        c.hosts.renew()
    assert not c.hosts.trusted()
    with store.session() as session:
        assert session.get(Host, "c") is None


# ---- R3 siblings: hosts list and task leases on the database's clock ----------------------------


def test_hosts_list_judges_liveness_on_the_databases_clock(store: Store, clock: Clock) -> None:
    _enrol(store, clock, "c")
    _hive(store, clock, "c").hosts.start()
    skewed = Clock()
    skewed.now = clock.now + 3600  # the orchestrator's clock is an hour ahead
    assert HostService(store).show("c")["liveness"] == "up"  # judged on the store's clock
    assert HostService(store, clock=skewed).show("c")["liveness"] == "lost"  # what the host's own clock said


def test_a_daemon_whose_clock_is_behind_does_not_extend_a_lease_into_the_past(store: Store, clock: Clock) -> None:
    behind = Clock()
    behind.now = clock.now - 3600
    a = _hive(store, behind, "a")
    a.hosts.start()
    agent, _ = a.register(Scope("tenant", "acme"), "m1", ECHO, None)
    task = a.submit(Scope("admin"), "echo", {}, tenant="acme")
    lease = a.claim(_ref(agent))
    assert lease is not None
    assert _row(store, Task, task["id"]).lease_expires_at == clock.now + 60  # the database's now + lease


# ---- the daemon's side: the term kept in the run directory ---------------------------------------


def _daemon(tmp_path: Path, store: Store, name: str, run: str) -> Daemon:
    short = {"host": name, "host_lease_seconds": 1.0, "host_lease_grace": 0.0}
    settings = Settings().model_copy(update={"state_dir": tmp_path / run / "state", "run_dir": tmp_path / run, **short})
    (tmp_path / run).mkdir(parents=True, exist_ok=True)
    daemon = Daemon(settings)
    daemon._store = store
    daemon._hive = _hive(store, Clock(), name)
    daemon._hive.hosts.seconds, daemon._hive.hosts.grace = 1.0, 0.0
    return daemon


def _close(daemon: Daemon) -> None:
    daemon._pool.shutdown()
    daemon._side.shutdown()


def test_the_daemon_keeps_its_term_in_its_run_dir_and_a_restart_after_a_crash_uses_it(
    tmp_path: Path, db_url: str
) -> None:
    store = Store(db_url)  # the database's own clock: the daemon waits on it
    first, again = _daemon(tmp_path, store, "a", "run"), _daemon(tmp_path, store, "a", "run")
    try:
        asyncio.run(first.lease.start())
        kept = tmp_path / "run" / LEASE_FILE
        assert json.loads(kept.read_text()) == {"host": "a", "term": 1}
        assert kept.stat().st_mode & 0o777 == 0o600
        assert first.dispatcher.started == pytest.approx(store.clock(), abs=5)  # on the database's clock
        asyncio.run(again.lease.start())  # first was killed: its lease is live, its term is in the run dir
        assert (again.lease.term, json.loads(kept.read_text())["term"]) == (2, 2)
        asyncio.run(again.lease.stop())
        assert not kept.exists() and _row(store, Host, "a").state == "down"
    finally:
        _close(first)
        _close(again)
        store.close()


def test_a_daemon_without_the_term_waits_one_lease_then_refuses_a_live_owner(tmp_path: Path, db_url: str) -> None:
    store = Store(db_url)
    owner, imposter = _daemon(tmp_path, store, "a", "one"), _daemon(tmp_path, store, "a", "two")
    try:
        asyncio.run(owner.lease.start())

        async def imposter_starts_while_owner_renews() -> None:
            async def renew() -> None:
                for _ in range(8):
                    await asyncio.sleep(0.25)
                    await owner.lease.renew()

            renewing = asyncio.create_task(renew())
            try:
                await imposter.lease.start()
            finally:
                await renewing

        with pytest.raises(StateConflict, match="another colibri daemon holds host a's lease"):
            asyncio.run(imposter_starts_while_owner_renews())
        assert not (tmp_path / "two" / LEASE_FILE).exists() and _row(store, Host, "a").lease_term == 1
        assert owner.lease.halted is None and owner.lease.trusted()
    finally:
        _close(owner)
        _close(imposter)
        store.close()


def test_a_daemon_told_to_stop_while_it_waits_for_a_lease_takes_none(tmp_path: Path, db_url: str) -> None:
    store = Store(db_url)
    owner, waiting = _daemon(tmp_path, store, "a", "one"), _daemon(tmp_path, store, "a", "two")
    try:
        asyncio.run(owner.lease.start())

        async def sigterm_while_waiting() -> None:
            stop = waiting.lease.stop_event = asyncio.Event()
            asyncio.get_running_loop().call_later(0.1, stop.set)
            await waiting.lease.start()

        asyncio.run(sigterm_while_waiting())
        assert waiting.lease.term == 0 and _row(store, Host, "a").lease_term == 1  # nothing taken
        assert not (tmp_path / "two" / LEASE_FILE).exists()
    finally:
        _close(owner)
        _close(waiting)
        store.close()


def test_a_daemon_whose_host_was_removed_stops_with_that_line(tmp_path: Path, db_url: str) -> None:
    store = Store(db_url)
    daemon = _daemon(tmp_path, store, "c", "run")
    try:
        asyncio.run(daemon.lease.start())
        with store.session() as session:  # hosts remove while c stood still (its lease lapsed)
            row = session.get(Host, "c")
            assert row is not None
            session.delete(row)
        stop = daemon.lease.stop_event = asyncio.Event()
        asyncio.run(daemon.lease.renew())
        assert stop.is_set() and isinstance(daemon.lease.halted, HostNotFound)
        assert str(daemon.lease.halted) == "host c was removed from the hive (colibri hosts remove); this daemon stops"
        assert daemon.lease.halted.exit_code == 4 and not (tmp_path / "run" / LEASE_FILE).exists()
        with store.session() as session:
            assert session.get(Host, "c") is None
    finally:
        _close(daemon)
        store.close()


def test_a_removed_hosts_daemon_restarted_by_its_supervisor_does_not_bring_it_back(tmp_path: Path, db_url: str) -> None:
    store = Store(db_url)
    first, restarted, enrolled = (_daemon(tmp_path, store, "c", "run") for _ in range(3))
    try:
        asyncio.run(first.lease.start())
        with store.session() as session:
            row = session.get(Host, "c")
            assert row is not None
            session.delete(row)
        first.lease.stop_event = asyncio.Event()
        asyncio.run(first.lease.renew())  # halted: exit 4; daemon(8) -r starts it again
        assert (tmp_path / "run" / "state" / REMOVED_FILE).exists()
        with pytest.raises(HostNotFound, match=r"host c was removed from the hive \(colibri hosts remove\): enrol"):
            asyncio.run(restarted.lease.start())
        with store.session() as session:
            assert session.get(Host, "c") is None  # still removed
        HostService(store).add("c", "root@192.0.2.12", [KEY], None)  # the operator enrols it again
        asyncio.run(enrolled.lease.start())
        assert enrolled.lease.term == 1 and not (tmp_path / "run" / "state" / REMOVED_FILE).exists()
        assert _row(store, Host, "c").address == "192.0.2.12"
    finally:
        for daemon in (first, restarted, enrolled):
            _close(daemon)
        store.close()


# ---- the database's clock ------------------------------------------------------------------------


def test_the_database_clock_follows_the_server_not_this_hosts_wall_clock(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(db_url)
    try:
        clock = store.clock
        assert isinstance(clock, DatabaseClock)
        real = time.time
        monkeypatch.setattr(time, "time", lambda: real() + 3600.0)  # this host's clock: an hour ahead
        assert clock.sync() and clock.synced
        assert abs(clock() - real()) < 60  # the server's clock (same machine), not the hour-ahead one
        before = clock()
        monkeypatch.setattr(time, "time", lambda: real() - 7200.0)  # stepped back two hours after the sync
        assert before <= clock() < before + 60  # carried forward on the monotonic clock
    finally:
        store.close()


def test_the_database_clock_carries_on_when_the_server_cannot_be_read(tmp_path: Path, db_url: str) -> None:
    store = Store(db_url)
    try:
        clock = store.clock
        assert isinstance(clock, DatabaseClock) and clock.sync()
        first = clock()
        clock._engine = create_engine(f"sqlite:///{tmp_path / 'no' / 'such' / 'dir.db'}")  # cannot be opened
        assert clock.sync() is False  # no error: the last reading is carried forward
        assert first <= clock() < first + 60
    finally:
        store.close()
