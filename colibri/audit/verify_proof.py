"""``audit verify --proof``: check one entry's inclusion proof offline; ``--key`` values read.

Pure, like the rest of ``colibri.audit``: no settings, no store, no network.
"""

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from colibri.audit import bundle, merkle, note
from colibri.audit.note import BadNote, PublicKey
from colibri.audit.verify_parts import fail, field_b64, field_text, read_record
from colibri.errors import AuditError


def read_keys(values: Iterable[str]) -> list[PublicKey]:
    """``--key`` values: a verifier key, or a file of them (one a line, # comments)."""
    keys: list[PublicKey] = []
    for value in values:
        texts = [value]
        if "+" not in value:
            try:
                texts = Path(value).read_text(encoding="utf-8")[: 1 << 20].splitlines()
            except (OSError, UnicodeDecodeError) as exc:
                raise AuditError(f"--key {value[:80]}: not a key and not a readable file ({exc})") from None
        for text in texts:
            if text.strip() and not text.lstrip().startswith("#"):
                try:
                    keys.append(note.parse_vkey(text))
                except BadNote as exc:
                    raise AuditError(f"--key: {exc}") from None
    return keys


def verify_proof(path: Path, trusted: Iterable[PublicKey]) -> dict[str, Any]:
    """Verify an ``audit prove`` file: the entry, its path to the root, the checkpoint's signature."""
    keys = list(trusted)
    if not keys:
        raise AuditError("audit verify needs at least one --key")
    try:
        data = path.read_bytes()[: bundle.MAX_RECORD + 1]
    except OSError as exc:
        raise AuditError(f"cannot read {path}: {exc.strerror}") from None
    proof = read_record(data, "proof")
    if proof.get("ok") is True and isinstance(proof.get("data"), dict):  # saved from `audit prove --json`
        proof = proof["data"]
    if proof.get("format") != "colibri-audit-proof" or proof.get("version") != 1:
        raise fail("not a colibri audit proof")
    entry = field_text(proof.get("entry"), "the proof's entry", 8192).encode()
    seq, size = proof.get("seq"), proof.get("size")
    path_items = proof.get("proof")
    if (
        not isinstance(seq, int)
        or not isinstance(size, int)
        or not isinstance(path_items, list)
        or len(path_items) > 64
    ):
        raise fail("the proof is malformed")
    try:
        checkpoint, key = note.open_note(field_text(proof.get("checkpoint"), "the checkpoint", note.MAX_NOTE), keys)
    except BadNote as exc:
        raise fail(f"the proof's checkpoint: {exc}") from None
    where = f"entry {checkpoint.host}#{seq}"
    if checkpoint.size != size or checkpoint.host != proof.get("host"):
        raise fail(f"{where}: the proof is for another tree than its checkpoint")
    hashes = [field_b64(item, "a proof hash") for item in path_items]
    if not merkle.verify_inclusion(merkle.leaf(entry), seq - 1, size, hashes, checkpoint.root):
        raise fail(f"{where}: not included in host {checkpoint.host}'s tree of size {size} (entry or proof changed)")
    if b'"seq":%d,' % seq not in entry:
        raise fail(f"{where}: the entry says another seq")
    return {
        "ok": True,
        "host": checkpoint.host,
        "seq": seq,
        "size": size,
        "checkpoint_time": checkpoint.time,
        "key": f"{key.name}+{key.key_id}",
        "entry": json.loads(entry),
    }
