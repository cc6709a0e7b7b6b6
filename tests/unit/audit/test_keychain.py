"""Key chains (colibri.audit.keychain) in verify and in the witness: never forked, retired keys sign
nothing after their retirement, and every walk linear in the keys (siblings of review 12's V2, V7, V13)."""

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import text

from colibri.adapters.audit_keys import KeyDir
from colibri.audit import keychain, merkle, note, origin
from colibri.audit import verify_work as work
from colibri.audit.entry import GENESIS, Event, body, leaf_hash
from colibri.audit.note import BadNote
from colibri.audit.verify import verify
from colibri.errors import AuditError
from colibri.services.audit.signer import AuditSigner, _peer_chain, _peer_keys
from colibri.store.audit import AuditRepo
from colibri.store.audit_trail import AuditCheckpoint, AuditKey, TrailRepo
from colibri.store.db import Store

WHEN = "2026-12-01T12:00:00.000000Z"


def _key(host: str) -> tuple[Ed25519PrivateKey, note.PublicKey]:
    private = Ed25519PrivateKey.generate()
    raw = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return private, note.PublicKey(note.key_name(host), raw)


def _endorsement(by_private: Ed25519PrivateKey, by: note.PublicKey, new: note.PublicKey, when: str) -> dict[str, Any]:
    signature = base64.b64encode(by_private.sign(note.endorse_message(new, when))).decode()
    return {"by": by.key_id, "time": when, "signature": signature}


def _line(record: dict[str, Any]) -> str:
    return json.dumps(record, separators=(",", ":"))


def _bundle(
    path: Path,
    signer: tuple[Ed25519PrivateKey, note.PublicKey],
    keys: list[dict[str, Any]],
    count: int,
    checkpoints: int = 1,
    exporter: tuple[Ed25519PrivateKey, note.PublicKey] | None = None,
) -> None:
    """A bundle of ``count`` entries of host osa, ``checkpoints`` checkpoints over them (the last at
    ``count``) signed by ``signer``, exported (at 18:00) by ``exporter`` (else ``signer``)."""
    lines, prev = [], GENESIS
    for seq in range(1, count + 1):
        event = Event("tenant.register", f"tenant:t{seq}", tenant=f"t{seq}")
        encoded = body(seq, "2026-12-01T17:00:00.000000Z", "osa", "operator:uid=0", event, prev)
        prev = leaf_hash(encoded)
        lines.append(encoded)
    leaves = [merkle.leaf(line) for line in lines]
    records: list[dict[str, Any]] = [
        {"t": "bundle", "format": "colibri-audit", "version": 1, "host": "osa", "time": "2026-12-01T18:00:00.000000Z"}
    ]
    records += keys
    private, public = signer
    for n in range(checkpoints):
        size = count - checkpoints + 1 + n
        when = f"2026-12-01T17:{n // 60000 % 60:02d}:{n // 1000 % 60:02d}.{n % 1000:03d}000Z"
        checkpoint = note.Checkpoint("osa", size, merkle.root(leaves[:size]), when)
        records.append({"t": "checkpoint", "note": note.sign(checkpoint, public, private.sign)})
    export_private, export_public = exporter or signer
    heads = {"osa": (count, merkle.root(leaves).hex())}
    export_time = "2026-12-01T18:00:00.000000Z"
    signature = export_private.sign(note.export_message("osa", export_time, heads))
    export = {"t": "export", "host": "osa", "time": export_time, "heads": {h: list(v) for h, v in heads.items()}}
    export |= {"key_id": export_public.key_id, "signature": base64.b64encode(signature).decode()}
    text_lines = [_line(r) for r in records] + [line.decode() for line in lines] + [_line(export)]
    path.write_text("\n".join(text_lines) + "\n")


def test_the_export_statement_signed_by_a_key_after_its_retirement_is_refused(tmp_path: Path) -> None:
    old_private, old = _key("osa")
    new_private, new = _key("osa")
    keys = [
        {"t": "key", "host": "osa", "key": old.vkey, "retired_at": WHEN},
        {"t": "key", "host": "osa", "key": new.vkey, "endorsement": _endorsement(old_private, old, new, WHEN)},
    ]
    _bundle(tmp_path / "ok.jsonl", (new_private, new), keys, 3)
    assert verify(tmp_path / "ok.jsonl", [old]).hosts["osa"].entries == 3
    _bundle(tmp_path / "late.jsonl", (new_private, new), keys, 3, exporter=(old_private, old))  # the leaked old key
    with pytest.raises(AuditError, match=r"export statement.*retired at"):
        verify(tmp_path / "late.jsonl", [old])


def test_a_chain_listed_newest_first_is_walked_once() -> None:
    chain = [_key("osa") for _ in range(50)]
    endorsements = [
        keychain.Endorsement(
            chain[n + 1][1], chain[n][1].key_id, WHEN, chain[n][0].sign(note.endorse_message(chain[n + 1][1], WHEN))
        )
        for n in reversed(range(49))
    ]
    checked = []
    real = note.PublicKey.verify

    def counting(self: note.PublicKey, signature: bytes, message: bytes) -> bool:
        checked.append(self.key_id)
        return real(self, signature, message)

    trusted = {(chain[0][1].name, chain[0][1].key_id): chain[0][1]}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(note.PublicKey, "verify", counting)
        successors = keychain.follow(trusted, endorsements)
    assert len(trusted) == 50 and len(checked) == 49  # one signature check a key, in any order
    assert successors[(chain[0][1].name, chain[0][1].key_id)] == (chain[1][1], WHEN)


def test_many_checkpoints_and_a_long_chain_cost_one_key_lookup_a_note(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = [_key("osa") for _ in range(300)]
    notes = 300
    monkeypatch.setattr(work, "idle_core", lambda: False)  # counted here, not in a second process
    hashed = []
    real = note._key_hash

    def counting(name: str, raw: bytes) -> bytes:
        hashed.append(name)
        return real(name, raw)

    records = [{"t": "key", "host": "osa", "key": keys[0][1].vkey}]
    records += [
        {
            "t": "key",
            "host": "osa",
            "key": keys[n + 1][1].vkey,
            "endorsement": _endorsement(keys[n][0], keys[n][1], keys[n + 1][1], WHEN),
        }
        for n in range(299)
    ]
    _bundle(tmp_path / "b.jsonl", keys[-1], records, notes, checkpoints=notes)
    monkeypatch.setattr(note, "_key_hash", counting)
    assert verify(tmp_path / "b.jsonl", [keys[0][1]]).hosts["osa"].checkpoints == notes
    assert len(hashed) < 8 * (len(keys) + notes), len(hashed)  # was keys x notes (92,000 here)


def _row(host: str, key: note.PublicKey, endorsement: dict[str, Any] | None = None) -> AuditKey:
    return AuditKey(
        host=host,
        key_id=key.key_id,
        public_key=key.vkey,
        created_at=WHEN,
        endorsement=json.dumps(endorsement) if endorsement else None,
    )


def test_a_witness_refuses_a_forked_key_chain_of_another_host() -> None:
    old_private, old = _key("domedog")
    _, new = _key("domedog")
    _, forged = _key("domedog")
    rows = [
        _row("domedog", old),
        _row("domedog", new, _endorsement(old_private, old, new, WHEN)),
        _row("domedog", forged, _endorsement(old_private, old, forged, "2026-12-01T11:00:00.000000Z")),
    ]
    assert len(_peer_keys("domedog", [old.vkey], rows[:2])) == 2
    assert _peer_chain("domedog", [old.vkey], rows[:2])[1] == {old.key_id: WHEN}
    with pytest.raises(BadNote, match="forked"):
        _peer_keys("domedog", [old.vkey], rows)
    with pytest.raises(BadNote, match="forked"):
        _peer_keys("domedog", None, rows)  # on first sight too


def test_a_witness_refuses_a_checkpoint_signed_by_a_retired_key_after_its_retirement(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        osa = AuditSigner(store, KeyDir(tmp_path / "osa" / "audit", "osa"), "osa")
        domedog = AuditSigner(store, KeyDir(tmp_path / "domedog" / "audit", "domedog"), "domedog")
        with origin.acting("daemon", host="domedog", vouch=domedog.keys.entry_key):
            with store.session() as session:
                AuditRepo(session).append(Event("tenant.register", "tenant:acme", tenant="acme"))
            assert domedog.checkpoint() is not None
            loaded = domedog.keys.load()
            assert loaded is not None
            leaked = loaded[0]
        with origin.acting("daemon", host="osa", vouch=osa.keys.entry_key):
            done, refused = osa.cosign()
        assert [s.host for s in done] == ["domedog"] and not refused  # domedog's key now pinned
        with origin.acting("daemon", host="domedog", vouch=domedog.keys.entry_key):
            old, _new = domedog.rotate()
            with store.session() as session:  # after the rotation, the leaked old key signs on
                AuditRepo(session).append(Event("agent.destroy", "tenant:acme", tenant="acme"))
        with store.engine.connect() as conn:
            bodies = [
                b for (b,) in conn.execute(text("SELECT body FROM audit_entries WHERE host='domedog' ORDER BY seq"))
            ]
            retired_at = conn.execute(
                text("SELECT retired_at FROM audit_keys WHERE key_id=:k"), {"k": old.key_id}
            ).scalar()
        root = merkle.root([merkle.leaf(b.encode()) for b in bodies])
        late = note.Checkpoint("domedog", len(bodies), root, "2099-01-01T00:00:00.000000Z")
        with store.session() as session:
            TrailRepo(session).add_checkpoint(
                AuditCheckpoint(
                    host="domedog",
                    size=len(bodies),
                    root=root.hex(),
                    key_id=old.key_id,
                    note=note.sign(late, old, leaked.sign),
                    signed_at=late.time,
                )
            )
        with origin.acting("daemon", host="osa", vouch=osa.keys.entry_key):
            done, refused = osa.cosign()
        assert not done, done
        assert len(refused) == 1 and f"retired at {retired_at}" in refused[0], refused
    finally:
        store.close()
