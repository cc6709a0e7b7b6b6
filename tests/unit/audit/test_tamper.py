"""The tamper cases of issue 12: the real store (the SQLite file, a real PostgreSQL table) edited
behind colibri's back, or the exported bundle edited; each is caught, naming the entry and why."""

import base64
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import create_engine, text

from colibri.audit import note
from colibri.audit.canonical import canonical
from colibri.audit.entry import GENESIS, leaf_hash
from colibri.audit.merkle import CompactRange
from colibri.store.audit import timestamp
from tests.conftest import Invoke
from tests.unit.audit.trail_helpers import export, keys, keys_of, record, verify

ENTRIES = 40  # + the key's creation = 41 signed entries of host osa


def sql(url: str, statement: str, **params: Any) -> list[Any]:
    """Edit the store directly: the sqlite3 module on the file, or a plain PostgreSQL session."""
    if url.startswith("sqlite:///"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        try:
            rows = conn.execute(statement, params).fetchall()
            conn.commit()
            return rows
        finally:
            conn.close()
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            result = conn.execute(text(statement), params)
            return list(result.all()) if result.returns_rows else []
    finally:
        engine.dispose()


def body(url: str, seq: int) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(
        sql(url, "SELECT body FROM audit_entries WHERE host = 'osa' AND seq = :s", s=seq)[0][0]
    )
    return found


def put(url: str, seq: int, value: dict[str, Any], new_seq: int | None = None, with_key: bool = False) -> None:
    """Rewrite osa's entry ``seq``; ``with_key``: with osa's own entry key (root on osa), its MAC too."""
    from colibri.audit.canonical import canonical
    from colibri.audit.entry import entry_mac

    encoded = canonical(value).decode()
    mac = entry_mac(keys("osa").entry_key(), encoded.encode()) if with_key else None
    sql(url, "UPDATE audit_entries SET body = :b, leaf = :l, seq = :n, mac = COALESCE(:m, mac) "
        "WHERE host = 'osa' AND seq = :s", b=encoded, l=leaf_hash(encoded.encode()),
        n=seq if new_seq is None else new_seq, s=seq, m=mac)  # fmt: skip


@pytest.fixture(name="signed")
def signed_fixture(
    db_url: str, monkeypatch: pytest.MonkeyPatch, invoke: Invoke, tmp_path: Path
) -> tuple[str, list[str]]:
    """Host osa with 41 entries, all covered by a checkpoint (the CLI signs at once); its keys."""
    monkeypatch.setenv("COLIBRI_DATABASE_URL", db_url)
    monkeypatch.setenv("COLIBRI_HOST", "osa")
    record(db_url, "osa", ENTRIES)
    export(invoke, tmp_path / "first.jsonl")  # signs the checkpoint at 41
    return db_url, keys_of(invoke)


def caught(invoke: Invoke, tmp_path: Path, keys: list[str], *words: str) -> str:
    bundle = tmp_path / "after.jsonl"
    export(invoke, bundle)
    code, out = verify(invoke, bundle, keys)
    assert code == 21, out
    for word in words:
        assert word in out, out
    return out


def test_intact_verifies(signed: tuple[str, list[str]], invoke: Invoke, tmp_path: Path) -> None:
    _url, keys = signed
    bundle = tmp_path / "ok.jsonl"
    export(invoke, bundle)
    code, out = verify(invoke, bundle, keys)
    assert code == 0 and "OK: 41 entries" in out, out


def test_a_changed_field_in_a_middle_entry(signed: tuple[str, list[str]], invoke: Invoke, tmp_path: Path) -> None:
    url, keys = signed
    value = body(url, 12)
    value["outcome"] = "failed"
    put(url, 12, value)
    caught(invoke, tmp_path, keys, "entry osa#13", "entry osa#12 was changed")


def test_a_changed_field_in_the_newest_signed_entry(
    signed: tuple[str, list[str]], invoke: Invoke, tmp_path: Path
) -> None:
    url, keys = signed
    value = body(url, 41)
    value["actor"] = "operator:uid=1000"
    put(url, 41, value)
    caught(invoke, tmp_path, keys, "checkpoint of host osa at size 41", "osa#1..osa#41", "changed")


def test_a_changed_entry_with_every_later_one_rechained(
    signed: tuple[str, list[str]], invoke: Invoke, tmp_path: Path
) -> None:
    url, keys = signed
    from colibri.audit.canonical import canonical

    prev_leaf = leaf_hash(canonical(body(url, 19)))
    for seq in range(20, 42):
        value = body(url, seq)
        if seq == 20:
            value["subject"] = "tenant:someone-else"
        value["prev"] = prev_leaf
        put(url, seq, value)
        prev_leaf = leaf_hash(canonical(value))
    sql(url, "UPDATE audit_heads SET leaf = :l WHERE host = 'osa'", l=prev_leaf)
    caught(invoke, tmp_path, keys, "checkpoint of host osa at size 41", "do not hash to its root")


def test_a_deleted_middle_entry(signed: tuple[str, list[str]], invoke: Invoke, tmp_path: Path) -> None:
    url, keys = signed
    sql(url, "DELETE FROM audit_entries WHERE host = 'osa' AND seq = 10")
    caught(invoke, tmp_path, keys, "entry osa#10", "says seq 11", "deleted")


def test_reordered_entries(signed: tuple[str, list[str]], invoke: Invoke, tmp_path: Path) -> None:
    url, keys = signed
    sql(url, "UPDATE audit_entries SET seq = 1000 WHERE host = 'osa' AND seq = 7")
    sql(url, "UPDATE audit_entries SET seq = 7 WHERE host = 'osa' AND seq = 8")
    sql(url, "UPDATE audit_entries SET seq = 8 WHERE host = 'osa' AND seq = 1000")
    caught(invoke, tmp_path, keys, "entry osa#7", "says seq 8", "moved")


def test_an_inserted_entry(signed: tuple[str, list[str]], invoke: Invoke, tmp_path: Path) -> None:
    url, keys = signed
    from colibri.audit.canonical import canonical

    for seq in range(41, 14, -1):  # make room at 15, as an insert would
        sql(url, "UPDATE audit_entries SET seq = :n WHERE host = 'osa' AND seq = :s", n=seq + 1, s=seq)
    forged = body(url, 14) | {"subject": "tenant:forged", "seq": 15}
    forged["prev"] = leaf_hash(canonical(body(url, 14)))
    encoded = canonical(forged).decode()
    insert = "INSERT INTO audit_entries (host, seq, ts, tenant, action, body, leaf) VALUES "
    insert += "('osa', 15, :ts, NULL, 'tenant.register', :b, :l)"
    sql(url, insert, ts=forged["ts"], b=encoded, l=leaf_hash(encoded.encode()))
    caught(invoke, tmp_path, keys, "entry osa#16", "says seq 15", "inserted")


def test_the_newest_signed_entries_deleted(signed: tuple[str, list[str]], invoke: Invoke, tmp_path: Path) -> None:
    url, keys = signed
    sql(url, "DELETE FROM audit_entries WHERE host = 'osa' AND seq > 38")
    caught(invoke, tmp_path, keys, "covers 41 entries but the bundle holds 38", "osa#39..41 were deleted")


def test_the_newest_deleted_with_the_head_row_is_refused_by_the_signer(
    signed: tuple[str, list[str]], invoke: Invoke, tmp_path: Path
) -> None:
    url, _keys = signed
    sql(url, "DELETE FROM audit_entries WHERE host = 'osa' AND seq > 38")
    sql(url, "DELETE FROM audit_checkpoints WHERE host = 'osa'")
    last = sql(url, "SELECT leaf FROM audit_entries WHERE host = 'osa' AND seq = 38")[0][0]
    sql(url, "UPDATE audit_heads SET seq = 38, leaf = :l WHERE host = 'osa'", l=last)
    code, out, err = invoke("audit", "export", str(tmp_path / "x.jsonl"))
    assert code == 21, out + err
    assert "the store holds 38 entries of host osa but this host signed 41" in err, err
    assert "osa#39..41 were deleted" in err
    record(url, "osa", 3, start=100)  # new changes on the truncated store, to the same length as signed
    code, out, err = invoke("audit", "export", str(tmp_path / "x.jsonl"))
    assert code == 21, out + err
    assert "entry osa#41 is not the one signed before: the store's tail was rewritten" in err, err


def test_a_checkpoint_signed_by_an_unknown_key(signed: tuple[str, list[str]], invoke: Invoke, tmp_path: Path) -> None:
    url, keys = signed
    record(url, "osa", 2, start=200)  # entries 42, 43 ...
    intruder = Ed25519PrivateKey.generate()
    from cryptography.hazmat.primitives import serialization

    raw = intruder.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    key = note.PublicKey("colibri.audit/osa", raw)
    tree = CompactRange()
    for (leaf,) in sql(url, "SELECT leaf FROM audit_entries WHERE host = 'osa' AND seq <= 42 ORDER BY seq"):
        tree.append(bytes.fromhex(leaf))
    # signed now (not in the future: osa goes on signing on its own clock, V9, and verify would then
    # report the order of its next checkpoint before the intruder's signature)
    checkpoint = note.Checkpoint("osa", 42, tree.root(), timestamp())
    sql(url, "INSERT INTO audit_checkpoints (host, size, root, key_id, note, signed_at) VALUES "
        "('osa', 42, :r, :k, :n, :t)", r=tree.root().hex(), k=key.key_id, n=note.sign(checkpoint, key, intruder.sign),
        t=checkpoint.time)  # fmt: skip
    caught(invoke, tmp_path, keys, "checkpoint of host osa at size 42", "signed by an unknown key")


def test_a_bundle_whose_public_key_was_swapped(signed: tuple[str, list[str]], invoke: Invoke, tmp_path: Path) -> None:
    """The file re-signed end to end by another key, that key put in as osa's: the --key catches it."""
    _url, keys = signed
    bundle = tmp_path / "b.jsonl"
    export(invoke, bundle)
    intruder = Ed25519PrivateKey.generate()
    from cryptography.hazmat.primitives import serialization

    raw = intruder.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    fake = note.PublicKey("colibri.audit/osa", raw)
    out = []
    for line in bundle.read_bytes().splitlines(keepends=True):
        record_ = json.loads(line)
        if record_.get("t") == "key":
            record_["key"] = fake.vkey
        elif record_.get("t") == "checkpoint":
            checkpoint, _ = note.parse(record_["note"])
            record_["note"] = note.sign(checkpoint, fake, intruder.sign)
        elif record_.get("t") == "export":
            heads = {h: (v[0], v[1]) for h, v in record_["heads"].items()}
            message = note.export_message(record_["host"], record_["time"], heads)
            record_["key_id"] = fake.key_id
            record_["signature"] = base64.b64encode(intruder.sign(message)).decode()
        else:
            out.append(line)
            continue
        out.append(json.dumps(record_, separators=(",", ":")).encode() + b"\n")
    bundle.write_bytes(b"".join(out))
    code, text_ = verify(invoke, bundle, keys)
    assert code == 21 and f"key {fake.key_id} of host osa is not one given with --key" in text_, text_
    assert "swapped" in text_
    code, text_ = verify(invoke, bundle, [fake.vkey])  # the attacker's key does verify its own forgery ...
    assert code == 0, text_  # ... which is why only a key from the host itself, out of band, is trusted


def test_checkpoints_out_of_order_in_the_bundle(signed: tuple[str, list[str]], invoke: Invoke, tmp_path: Path) -> None:
    _url, keys = signed
    record(_url, "osa", 3, start=300)
    export(invoke, tmp_path / "two.jsonl")  # a second checkpoint, at 44
    lines = (tmp_path / "two.jsonl").read_bytes().splitlines(keepends=True)
    at = [i for i, line in enumerate(lines) if line.startswith(b'{"t":"checkpoint"')]
    assert len(at) == 2
    lines[at[0]], lines[at[1]] = lines[at[1]], lines[at[0]]
    (tmp_path / "two.jsonl").write_bytes(b"".join(lines))
    code, out = verify(invoke, tmp_path / "two.jsonl", keys)
    assert code == 21 and "does not come after the one at size 44" in out and "replayed" in out, out


def test_a_bundle_cut_short_or_padded(signed: tuple[str, list[str]], invoke: Invoke, tmp_path: Path) -> None:
    _url, keys = signed
    bundle = tmp_path / "c.jsonl"
    export(invoke, bundle)
    lines = bundle.read_bytes().splitlines(keepends=True)
    bundle.write_bytes(b"".join(lines[:-1]))
    code, out = verify(invoke, bundle, keys)
    assert code == 21 and "without the export statement" in out, out
    bundle.write_bytes(b"".join(lines[:-3] + lines[-1:]))  # the two newest entries taken out of the file
    code, out = verify(invoke, bundle, keys)
    assert code == 21 and "checkpoint of host osa at size 41 covers 41 entries but the bundle holds 39" in out, out


def test_the_genesis_entry_changed(signed: tuple[str, list[str]], invoke: Invoke, tmp_path: Path) -> None:
    url, keys = signed
    value = body(url, 1)
    assert value["prev"] == GENESIS
    value["prev"] = "f" * 64
    put(url, 1, value)
    caught(invoke, tmp_path, keys, "entry osa#1", "genesis")


def test_a_signer_that_lost_its_memory_still_checks_its_last_checkpoint(
    signed: tuple[str, list[str]], invoke: Invoke, tmp_path: Path
) -> None:
    import os

    url, _keys = signed
    from colibri.audit.canonical import canonical

    (Path(os.environ["COLIBRI_STATE_DIR"]) / "audit" / "memory.json").unlink()
    prev_leaf = leaf_hash(canonical(body(url, 19)))
    for seq in range(20, 42):  # entry 20 rewritten, every later one chained to it (by root on osa: MACs too)
        value = body(url, seq)
        if seq == 20:
            value["subject"] = "tenant:rewritten"
        value["prev"] = prev_leaf
        put(url, seq, value, with_key=True)
        prev_leaf = leaf_hash(canonical(value))
    sql(url, "UPDATE audit_heads SET leaf = :l WHERE host = 'osa'", l=prev_leaf)
    record(url, "osa", 2, start=700)
    code, out, err = invoke("audit", "export", str(tmp_path / "x.jsonl"))
    assert code == 21 and "entries 1..41 no longer hash to the checkpoint it signed" in err, out + err


def test_an_entry_rewritten_without_the_hosts_entry_key_is_not_signed(
    signed: tuple[str, list[str]], invoke: Invoke, tmp_path: Path
) -> None:
    """V3 sibling: a rewrite with only database credentials (no MAC under osa's key) is refused at
    the entry, even past the newest checkpoint, where no signed root covers it yet."""
    url, _keys = signed
    record(url, "osa", 1, start=800)
    head = int(sql(url, "SELECT seq FROM audit_heads WHERE host = 'osa'")[0][0])
    value = body(url, head)
    value["subject"] = "tenant:rewritten"
    put(url, head, value)
    sql(url, "UPDATE audit_heads SET leaf = :l WHERE host = 'osa'", l=leaf_hash(canonical(value)))
    code, out, err = invoke("audit", "export", str(tmp_path / "x.jsonl"))
    assert code == 21 and f"entry osa#{head} was not written by this host" in err, out + err
