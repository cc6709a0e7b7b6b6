"""The daemon's SQLite store checkpoints its WAL from a thread, not in a commit (issue 14: the
commit that crossed SQLite's 1,000-page mark was a spawn decision's p99)."""

import sqlite3
from pathlib import Path

from sqlalchemy import text

from colibri.poll import poll_true
from colibri.store.db import Store
from colibri.store.walcheckpoint import BACKSTOP_PAGES


def autocheckpoint(store: Store) -> int:
    with store.connect() as conn:
        return int(conn.execute(text("PRAGMA wal_autocheckpoint")).scalar_one())


def wal_pages(path: Path) -> int:
    wal = path.with_name(path.name + "-wal")
    return wal.stat().st_size // 4096 if wal.exists() else 0


def test_a_command_keeps_sqlites_checkpoints_and_the_daemon_moves_them_to_a_thread(tmp_path: Path) -> None:
    command = Store(f"sqlite:///{tmp_path / 'a.db'}")
    try:
        assert autocheckpoint(command) == 1000 and command.checkpointer is None
    finally:
        command.close()
    path = tmp_path / "b.db"
    daemon = Store(f"sqlite:///{path}", wal_checkpoints=0.05)
    try:
        assert autocheckpoint(daemon) == BACKSTOP_PAGES and daemon.checkpointer is not None
        with daemon.connect() as conn:
            conn.execute(text("CREATE TABLE junk (n INTEGER, pad TEXT)"))
            conn.commit()
        for n in range(300):  # well past 1,000 pages of WAL: SQLite would have checkpointed in a commit
            with daemon.connect() as conn:
                conn.execute(text("INSERT INTO junk VALUES (:n, :pad)"), {"n": n, "pad": "x" * 12000})
                conn.commit()
        assert wal_pages(path) > 1000  # the WAL is reused from its start once checkpointed, never shrunk
        checkpointer = daemon.checkpointer
        # the thread's PASSIVE checkpoint copied every frame of the WAL into the database
        assert poll_true(lambda: checkpointer.last is not None and checkpointer.last[1] > 1000
                         and checkpointer.last[1] == checkpointer.last[2], timeout=10)  # fmt: skip
        probe = sqlite3.connect(path)
        try:
            assert probe.execute("SELECT count(*) FROM junk").fetchone() == (300,)
        finally:
            probe.close()
        thread = daemon.checkpointer._thread
        assert thread is not None and thread.is_alive()
    finally:
        daemon.close()
    assert not thread.is_alive() and daemon.checkpointer is None


def test_a_memory_store_has_no_checkpoint_thread() -> None:
    store = Store("sqlite:///:memory:", wal_checkpoints=0.05)
    try:
        assert store.checkpointer is None
    finally:
        store.close()
