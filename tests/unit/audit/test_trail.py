"""Checkpoints, export and offline verify end to end through the CLI (issue 12), on SQLite and PostgreSQL."""

import json
import os
import stat
from pathlib import Path

import pytest

from tests.conftest import Invoke
from tests.unit.audit.trail_helpers import export, keys_of, record, verify


@pytest.fixture(name="osa")
def osa_fixture(db_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("COLIBRI_DATABASE_URL", db_url)
    monkeypatch.setenv("COLIBRI_HOST", "osa")
    return db_url


def test_an_intact_bundle_verifies_with_counts_and_the_unsigned_tail(osa: str, invoke: Invoke, tmp_path: Path) -> None:
    record(osa, "osa", 40)
    bundle = tmp_path / "audit.jsonl"
    view = export(invoke, bundle)
    assert view["fresh_checkpoint_size"] == 41  # 40 changes + the key's creation, signed before the export
    assert stat.S_IMODE(os.stat(bundle).st_mode) == 0o600
    keys = keys_of(invoke)
    code, out = verify(invoke, bundle, keys)
    assert code == 0, out
    assert "OK: 41 entries of 1 host(s)" in out and "no unsigned tail" in out
    record(osa, "osa", 5, start=40)  # not signed by a checkpoint: only by the export's statement
    code, out, _err = invoke("audit", "log", "--limit", "3", "--json")
    assert code == 0 and [e["seq"] for e in json.loads(out)["data"]] == [44, 45, 46]


def test_a_command_that_recorded_changes_signs_them_before_it_ends(osa: str) -> None:
    from colibri.audit.entry import Event
    from colibri.cli.context import Context
    from colibri.store.audit import AuditRepo
    from colibri.store.audit_trail import TrailRepo

    ctx = Context()
    with ctx.store.session() as session:  # what a service does inside a command
        AuditRepo(session).append(Event("tenant.register", "tenant:acme", tenant="acme"))
    ctx.close()  # the command ends
    check = Context()
    with check.store.session() as session:
        latest = TrailRepo(session).latest_checkpoint("osa")
        head = TrailRepo(session).heads()["osa"][0]
    check.close()
    assert latest is not None and latest.size == head == 2  # the change and the key's creation


def test_entries_no_checkpoint_covers_are_reported_as_the_unsigned_tail(
    osa: str, invoke: Invoke, tmp_path: Path
) -> None:
    record(osa, "osa", 3)
    record(osa, "domedog", 5)  # another host whose daemon has not signed them (yet, or ever: it died)
    bundle = tmp_path / "audit.jsonl"
    export(invoke, bundle)
    code, out = verify(invoke, bundle, keys_of(invoke))
    assert code == 0, out
    assert "domedog: 5 entries, 0 checkpoints" in out and "5 entries after the newest checkpoint (since 20" in out
    assert "signed only by the export" in out and "osa: 4 entries" in out
