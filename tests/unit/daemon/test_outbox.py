"""The outbox of completions acknowledged while the store was down (issue 11): durable, bounded,
replayed with the lease, refused when the task was rescued meanwhile (logged, not applied)."""

import asyncio
import logging
import stat
from pathlib import Path

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
