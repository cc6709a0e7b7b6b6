"""The outbox of completions acknowledged while the store was down (issue 11): durable, bounded,
replayed with the lease, refused when the task was rescued meanwhile (logged, not applied)."""

import asyncio
import logging
import stat
from pathlib import Path
from types import SimpleNamespace

import pytest

from colibri.daemon.outbox import Outbox
from colibri.daemon.server import Daemon
from colibri.errors import StoreError
from colibri.services.hive.rules import AgentRef, Scope
from colibri.services.hive.service import HiveService
from colibri.settings import Settings
from tests.unit.daemon.hive_world import active_tenants

ECHO = [{"name": "echo", "version": "1"}]


def test_records_are_appended_0600_bounded_and_dropped_in_order(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "state", 300)
    assert outbox.records() == [] and len(outbox) == 0
    outbox.append({"task": 1, "result": "x" * 50})
    outbox.append({"task": 2})
    assert stat.S_IMODE(outbox.path.stat().st_mode) == 0o600 and len(outbox) == 2
    with pytest.raises(StoreError, match="outbox is full"):
        outbox.append({"task": 3, "result": "y" * 300})
    with outbox.path.open("ab") as handle:
        handle.write(b'{"task": 4, "torn')  # a crash mid-write
    assert [r["task"] for r in Outbox(tmp_path / "state", 300).records()] == [1, 2]
    outbox.append({"task": 5})  # appended while a replay runs: kept by drop_first
    outbox.drop_first(1)
    assert [r["task"] for r in outbox.records()] == [2, 5] and len(outbox) == 2
    assert stat.S_IMODE(outbox.path.stat().st_mode) == 0o600
    outbox.drop_first(2)
    assert not outbox.path.exists() and len(outbox) == 0


def test_a_replay_completes_a_held_task_and_refuses_a_rescued_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(state_dir=tmp_path, run_dir=tmp_path / "run", host="a")
    store = active_tenants(f"sqlite:///{tmp_path / 'hive.db'}", {"acme": "a"})
    daemon = Daemon(settings)
    try:
        hive = daemon._hive = HiveService(store, daemon.policy, host="a")
        daemon._store = store
        hive.hosts.start()
        ref = AgentRef("acme/m1", "acme", None, frozenset({"echo"}))
        hive.register(Scope("tenant", "acme"), "m1", ECHO, None)
        kept, rescued = (hive.submit(Scope("admin"), "echo", n, tenant="acme") for n in (1, 2))
        leases = [hive.claim(ref), hive.claim(ref)]
        for task, lease in zip((kept, rescued), leases, strict=True):
            assert lease is not None and lease["id"] == task["id"]
            daemon.outbox.append({"task": task["id"], "scope": ["tenant", "acme"], "agent": "acme/m1",
                                  "lease": lease["lease"], "ok": True, "result": task["id"], "error": None,
                                  "exit_status": 0})  # fmt: skip
        hive.release(rescued["id"], str(leases[1]["lease"]))  # rescued meanwhile: its lease is gone
        with caplog.at_level(logging.WARNING, logger="colibri.daemon"):
            asyncio.run(daemon._replay())
        assert hive.task(Scope("admin"), kept["id"])["state"] == "succeeded"
        assert hive.task(Scope("admin"), rescued["id"])["state"] == "queued"
        assert any("was refused (rescued meanwhile)" in r.getMessage() for r in caplog.records)
        assert len(daemon.outbox) == 0 and not daemon.outbox.path.exists()
    finally:
        daemon._pool.shutdown()
        daemon._side.shutdown()
        store.close()


def _result(tenant: str, task: int, size: int = 0) -> dict[str, object]:
    return {"task": task, "scope": ["tenant", tenant], "agent": f"{tenant}/m1", "lease": "l" * 32, "ok": True,
            "result": "r" * size}  # fmt: skip


def _fill(outbox: Outbox, tenant: str, start: int) -> int:
    """Append the tenant's results until refused; how many were kept."""
    for n in range(start, start + 1_000_000):
        try:
            outbox.append(_result(tenant, n, 100))
        except StoreError as exc:
            assert f"tenant {tenant}'s share of the local outbox is full" in str(exc)
            return n - start
    raise AssertionError("never refused")


def test_each_tenant_holds_at_most_what_is_left_free_so_others_keep_room(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "state", 64 * 1024)
    _fill(outbox, "hog", 0)
    hog_bytes, hog_records = outbox.held("tenant:hog")
    assert 64 * 1024 / 2 - 200 < hog_bytes <= 64 * 1024 / 2  # alone: half the outbox
    _fill(outbox, "pig", 10_000)
    assert outbox.held("tenant:pig")[0] <= outbox.max_bytes - outbox.held("tenant:pig")[0] - hog_bytes
    outbox.append(_result("acme", 7))  # nothing kept for acme: its one real result finds room
    assert outbox.held("tenant:acme")[1] == 1
    again = Outbox(tmp_path / "state", 64 * 1024)  # the daemon restarted: the shares read from the file
    assert again.held("tenant:hog") == (hog_bytes, hog_records)
    with pytest.raises(StoreError, match="tenant hog's share"):
        again.append(_result("hog", 99_999, 100))
    again.append(_result("bolt", 8))


def test_the_record_bound_is_shared_the_same_way(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "state", 1024 * 1024, max_records=10)
    kept = _fill(outbox, "hog", 0)
    assert kept == 5  # alone: half the records (a 6th would leave 4 free with 6 held)
    outbox.append(_result("acme", 7))
    with pytest.raises(StoreError, match="outbox is full"):
        for n in range(5):
            outbox.append(_result(f"t{n}", n))


def test_a_replay_takes_the_tenants_in_turn_each_in_its_order(tmp_path: Path) -> None:
    from colibri.daemon.metrics import Metrics
    from colibri.daemon.replay import Replay, in_turns

    outbox = Outbox(tmp_path / "state", 1024 * 1024)
    for n in range(1, 41):
        outbox.append(_result("hog", n))
    outbox.append(_result("acme", 100))
    outbox.append(_result("acme", 101))
    assert [r["task"] for r in map(outbox.records().__getitem__, in_turns(outbox.records())[:5])] == [1, 100, 2, 101, 3]
    replayed: list[int] = []

    async def db(_: object, *args: object) -> dict[str, object]:
        if len(replayed) == 3:
            raise StoreError("the database went away again")
        replayed.append(int(str(args[2])))
        return {"id": args[2], "state": "succeeded"}

    class Finished:
        def finished(self, task_id: int) -> None:
            pass

    hive = SimpleNamespace(finish=None)
    replay = Replay(outbox, db, lambda: hive, Metrics(), Finished())  # type: ignore[arg-type, return-value]
    with pytest.raises(StoreError):
        asyncio.run(replay.run())
    assert replayed == [1, 100, 2]  # acme's result was not kept behind hog's forty
    left = [r["task"] for r in outbox.records()]
    assert left == [n for n in range(3, 41)] + [101]  # the rest, each tenant's in order
