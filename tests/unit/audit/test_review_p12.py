"""The last review's doubts about the audit (issue 12, part P12): each test failed on the code before."""

import json
import os
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from colibri.adapters.audit_keys import KeyDir
from colibri.audit import origin
from colibri.audit.entry import Event
from colibri.audit.verify import verify
from colibri.errors import SecretsError, StoreError
from colibri.services.audit import export, query
from colibri.services.audit.signer import AuditSigner
from colibri.store.audit import AuditRepo
from colibri.store.db import Store


@pytest.fixture(name="world")
def world_fixture(tmp_path: Path) -> Any:
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    keys = KeyDir(tmp_path / "audit", "osa")
    with origin.acting("operator:uid=0", host="osa", vouch=keys.entry_key):
        for n in range(3):
            with store.session() as session:
                AuditRepo(session).append(Event("tenant.register", f"tenant:t{n}", tenant=f"t{n}"))
        yield store, keys, AuditSigner(store, keys, "osa")
    store.close()


def _bodies(store: Store) -> list[dict[str, Any]]:
    with store.connect() as conn:
        return [json.loads(b) for (b,) in conn.execute(text("SELECT body FROM audit_entries ORDER BY seq"))]


# (a) ---------------------------------------------------------------------------------------------
def test_a_a_provision_whose_rename_failed_is_recorded_as_not_installed(
    world: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from colibri.services.secrets_write import EnvTarget, EnvWriter
    from colibri.store.models import Tenant

    store, _keys, _signer = world
    home = tmp_path / "homes" / "acme"
    home.mkdir(parents=True)
    (home / ".env").write_bytes(b"OLD='1'\n")
    with store.session() as session:
        session.add(Tenant(tenant_id="acme", jail_name="acme", host="osa", status="running",
                           backend="local", jail_root=str(home)))  # fmt: skip
    real = os.rename

    def failing(src: Any, dst: Any, **kw: Any) -> None:
        if dst == ".env":
            raise OSError(5, "Input/output error")
        real(src, dst, **kw)

    monkeypatch.setattr(os, "rename", failing)
    writer = EnvWriter(store, "root", (tmp_path / "homes",), digest=lambda content: "d" * 64)
    with origin.acting("operator:uid=0", host="osa"), pytest.raises(SecretsError):
        writer.deliver(EnvTarget("acme", "local", str(home)), b"NEW='2'\n")
    assert (home / ".env").read_bytes() == b"OLD='1'\n"  # nothing changed in the jail ...
    provisions = [b for b in _bodies(store) if b["action"] == "secrets.provision"]
    # ... and the log's last word on this .env says so: the entry recorded before the rename is
    # followed by one saying that the same content was not installed
    assert [p["outcome"] for p in provisions] == ["ok", "failed"], provisions
    assert provisions[-1]["detail"]["installed"] is False and provisions[-1]["detail"]["digest"] == "d" * 64


# (b) ---------------------------------------------------------------------------------------------
def test_b_a_junk_or_huge_checkpoint_row_does_not_make_the_export_unverifiable(world: Any, tmp_path: Path) -> None:
    store, _keys, signer = world
    signed = signer.checkpoint()
    assert signed is not None
    with store.engine.begin() as conn:
        insert = ("INSERT INTO audit_checkpoints (host, size, root, key_id, note, signed_at) "
                  "VALUES (:h, :s, :r, 'k', :n, 't')")  # fmt: skip
        conn.execute(text(insert), {"h": "osa", "s": 2, "r": "00" * 32, "n": "junk\n"})
        conn.execute(text(insert), {"h": "osa", "s": 10**9, "r": "00" * 32, "n": "x" * 3_000_000})
        conn.execute(text("INSERT INTO audit_cosignatures (host, size, witness, root, key_id, signature, signed_at) "
                          "VALUES ('osa', 3, 'evil', 'not hex', 'k', 's', 't')"))  # fmt: skip
        conn.execute(text("INSERT INTO audit_keys (host, key_id, public_key, created_at, endorsement) "
                          "VALUES ('evil', 'k', 'not a key', 't', '{junk')"))  # fmt: skip
    done = export.export(signer, tmp_path / "b.jsonl")
    assert max(len(line) for line in (tmp_path / "b.jsonl").read_bytes().splitlines()) < 10_000
    assert any("longer than" in w for w in done.warnings) and any("osa@2" in w for w in done.warnings), done.warnings
    report = verify(tmp_path / "b.jsonl", [signer.public_key()])
    assert report.hosts["osa"].entries == 4  # three, and its key's making


# (c) ---------------------------------------------------------------------------------------------
def test_c_junk_rows_are_reported_as_junk_not_as_entries_keys_or_a_traceback(world: Any) -> None:
    store, _keys, signer = world
    own = signer.public_key()
    signer.checkpoint()
    with store.engine.begin() as conn:
        conn.execute(text("INSERT INTO audit_keys (host, key_id, public_key, created_at, endorsement) "
                          "VALUES ('evil', 'k', 'colibri.audit/evil+00000000+AAAA', 't', '{junk')"))  # fmt: skip
        conn.execute(text("INSERT INTO audit_checkpoints (host, size, root, key_id, note, signed_at) "
                          "VALUES ('osa', 99, :r, 'k', 'junk', 't')"), {"r": "00" * 32})  # fmt: skip
    rows = {row["host"]: row for row in query.keys(store, own)}
    assert rows["evil"]["problem"] and rows["osa"]["problem"] is None and rows["osa"]["this_host"]
    proof = query.prove(store, "osa", 1)  # the newest checkpoint that is one, not the junk row at 99
    assert proof["size"] == 4
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE audit_entries SET body = '{not json' WHERE seq = 2"))
    entries = query.log(store, None, None, None, 10)
    assert [e.get("junk") is not None for e in entries] == [False, True, False, False], entries
    assert entries[1]["outcome"] == "junk" and entries[1]["seq"] == 2 and "ts" in entries[1]  # what the table shows


# (d) ---------------------------------------------------------------------------------------------
def test_d_a_rotation_whose_store_commit_fails_leaves_the_old_key_in_force(world: Any, tmp_path: Path) -> None:
    store, keys, signer = world
    old = signer.public_key()
    signer.checkpoint()
    with store.engine.begin() as conn:  # the commit of the rotation's rows fails (after every statement ran)
        conn.execute(text("CREATE TABLE p12_parent (id INTEGER PRIMARY KEY)"))
        conn.execute(text("CREATE TABLE p12_child "
                          "(pid INTEGER REFERENCES p12_parent(id) DEFERRABLE INITIALLY DEFERRED)"))  # fmt: skip
        conn.execute(text("CREATE TRIGGER p12_fail AFTER INSERT ON audit_keys WHEN NEW.endorsement IS NOT NULL "
                          "BEGIN INSERT INTO p12_child VALUES (42); END"))  # fmt: skip
    with pytest.raises(StoreError):
        signer.rotate()
    with store.engine.begin() as conn:
        conn.execute(text("DROP TRIGGER p12_fail"))
    again = AuditSigner(store, keys, "osa")  # the next command
    assert again.public_key().key_id == old.key_id  # the store's current key is the one that signs
    with origin.acting("operator:uid=0", host="osa", vouch=keys.entry_key), store.session() as session:
        AuditRepo(session).append(Event("tenant.register", "tenant:t9", tenant="t9"))
    export.export(again, tmp_path / "b.jsonl")
    # three, the key's making, t9 (the refused rotation recorded nothing)
    assert verify(tmp_path / "b.jsonl", [old]).hosts["osa"].entries == 5


def test_d_a_rotation_cut_after_its_commit_is_finished_by_the_next_signer(
    world: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, keys, signer = world
    old = signer.public_key()

    class Crash(BaseException):
        pass

    def crash(self: KeyDir) -> None:
        raise Crash  # the process dies between the commit and the key file's rename

    monkeypatch.setattr(KeyDir, "promote", crash)
    with pytest.raises(Crash):
        signer.rotate()
    monkeypatch.undo()
    again = AuditSigner(store, keys, "osa")
    new = again.public_key()
    assert new.key_id != old.key_id and keys.staged() is None
    export.export(again, tmp_path / "b.jsonl")
    report = verify(tmp_path / "b.jsonl", [old])  # the old key's endorsement carries trust to the new one
    assert report.hosts["osa"].entries >= 4


def test_c_audit_log_and_keys_show_junk_rows_in_one_line_each(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, invoke: Any
) -> None:
    from tests.unit.audit.trail_helpers import record

    url = f"sqlite:///{tmp_path / 'store.db'}"
    monkeypatch.setenv("COLIBRI_DATABASE_URL", url)
    monkeypatch.setenv("COLIBRI_HOST", "osa")
    record(url, "osa", 2)
    store = Store(url)
    try:
        with store.engine.begin() as conn:
            conn.execute(text("UPDATE audit_entries SET body = '{}' WHERE seq = 1"))
            conn.execute(text("INSERT INTO audit_keys (host, key_id, public_key, created_at, endorsement) "
                              "VALUES ('evil', 'k', 'junk', 't', '[1]')"))  # fmt: skip
    finally:
        store.close()
    code, out, err = invoke("audit", "log")
    assert code == 0 and "junk" in out and "Traceback" not in out + err, out + err
    code, out, err = invoke("audit", "keys", "--verifier-keys")
    assert code == 0 and "junk" not in out, out + err
    code, out, err = invoke("audit", "keys")
    assert code == 0 and "evil (junk)" in out, out + err
