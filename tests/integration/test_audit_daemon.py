"""The daemon's audit loop with a real daemon process (issue 12): it signs this host's checkpoint
when entries wait ``audit_checkpoint_seconds`` or ``audit_checkpoint_entries`` pile up, and a
``kill -9`` between state changes and their checkpoint (the daemon, and the process writing the
changes mid-transaction) leaves a log that still verifies."""

import json
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.integration.hive_harness import Hive, wait_until

pytestmark = pytest.mark.integration

RECORDER = """
import os
import sys
from pathlib import Path
from colibri.adapters.audit_keys import KeyDir
from colibri.audit import origin
from colibri.audit.entry import Event
from colibri.store.audit import AuditRepo
from colibri.store.db import Store

store = Store(sys.argv[1])
n = 0
keys = KeyDir(Path(os.environ["COLIBRI_STATE_DIR"]) / "audit", "testhost")  # as testhost's own colibri
with origin.acting("agent:acme/a1", host="testhost", vouch=keys.entry_key):
    while True:
        n += 1
        with store.session() as session:
            AuditRepo(session).append(Event("task.complete", f"task:{n}", tenant="acme", detail={"n": n}))
"""


@pytest.fixture(name="hive")
def hive_fixture() -> Iterator[Hive]:
    hive = Hive({"COLIBRI_AUDIT_CHECKPOINT_SECONDS": "0.3", "COLIBRI_AUDIT_CHECKPOINT_ENTRIES": "1000000"})
    try:
        yield hive
    finally:
        hive.close()


def rows(hive: Hive, query: str) -> list[tuple[int, ...]]:
    with sqlite3.connect(hive.db_path) as conn:
        found = conn.execute(query).fetchall()
    conn.close()
    return found


def newest_checkpoint(hive: Hive) -> int:
    return int(rows(hive, "SELECT coalesce(max(size), 0) FROM audit_checkpoints WHERE host = 'testhost'")[0][0])


def entries(hive: Hive) -> int:
    return int(rows(hive, "SELECT coalesce(max(seq), 0) FROM audit_entries WHERE host = 'testhost'")[0][0])


def recorder(hive: Hive) -> "subprocess.Popen[bytes]":
    return subprocess.Popen([sys.executable, "-c", RECORDER, f"sqlite:///{hive.db_path}"], env=hive.env)


def verify_bundle(hive: Hive) -> str:
    bundle = hive.root / "audit.jsonl"
    hive.colibri("audit", "export", str(bundle))
    keys = [k["public_key"] for k in json.loads(hive.colibri("audit", "keys", "--json").stdout)["data"]]
    done = hive.colibri("audit", "verify", str(bundle), *[a for k in keys for a in ("--key", k)], check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_the_daemon_signs_by_time_and_a_kill_9_leaves_a_log_that_verifies(hive: Hive) -> None:
    hive.start()
    writer = recorder(hive)
    try:
        wait_until(lambda: newest_checkpoint(hive) >= 50, 30)  # signed by time (the entry cap is far away)
        hive.daemon.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
        hive.daemon.wait(10)  # type: ignore[union-attr]
        hive.daemon = None
        signed = newest_checkpoint(hive)
        wait_until(lambda: entries(hive) >= signed + 50, 30)  # state changes no checkpoint covers
    finally:
        writer.send_signal(signal.SIGKILL)  # mid-transaction, most likely: it commits in a tight loop
        writer.wait(10)
    total = entries(hive)
    assert total > newest_checkpoint(hive)
    hive.start()  # the daemon's memory survived the kill: it signs the rest on
    wait_until(lambda: newest_checkpoint(hive) == entries(hive), 30)
    hive.stop()
    out = verify_bundle(hive)
    assert f"{entries(hive)} entries" in out and "no unsigned tail" in out


def test_the_daemon_signs_when_entries_pile_up() -> None:
    hive = Hive({"COLIBRI_AUDIT_CHECKPOINT_SECONDS": "3600", "COLIBRI_AUDIT_CHECKPOINT_ENTRIES": "40"})
    try:
        hive.start()
        writer = recorder(hive)
        try:
            wait_until(lambda: newest_checkpoint(hive) >= 40, 30)
        finally:
            writer.send_signal(signal.SIGKILL)
            writer.wait(10)
        hive.stop()
        verify_bundle(hive)
    finally:
        hive.close()


@pytest.mark.postgres
def test_two_hosts_daemons_cosign_each_other_on_one_postgresql(postgres_server) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import create_engine, text

    url = postgres_server.create_database()
    fast = {"COLIBRI_DATABASE_URL": url, "COLIBRI_AUDIT_CHECKPOINT_SECONDS": "0.3"}
    osa, domedog = Hive({**fast, "COLIBRI_HOST": "osa"}), Hive({**fast, "COLIBRI_HOST": "domedog"})
    try:
        osa.start()
        domedog.start()
        for hive, host in ((osa, "osa"), (domedog, "domedog")):
            script = RECORDER.replace('host="testhost"', f'host="{host}"').replace("while True:", "for _ in range(30):")
            subprocess.run([sys.executable, "-c", script, url], env=hive.env, check=True, timeout=60)

        def cosigned() -> set[tuple[str, str]]:
            engine = create_engine(url)
            try:
                with engine.connect() as conn:
                    rows = conn.execute(text("SELECT host, witness FROM audit_cosignatures WHERE size >= 30")).all()
            finally:
                engine.dispose()
            return {(str(h), str(w)) for h, w in rows}

        wait_until(lambda: cosigned() >= {("osa", "domedog"), ("domedog", "osa")}, 60)
        osa.stop()
        domedog.stop()
        bundle = osa.root / "audit.jsonl"
        osa.colibri("audit", "export", str(bundle))
        keys = osa.colibri("audit", "keys", "--verifier-keys").stdout.split()
        assert len(keys) == 2
        done = osa.colibri("audit", "verify", str(bundle), *[a for k in keys for a in ("--key", k)], check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "by domedog" in done.stdout and "by osa" in done.stdout
    finally:
        osa.close()
        domedog.close()
