"""``colibri audit export``: every host's entries, checkpoints, cosignatures and public keys in one
file (colibri/audit/bundle.py), ended by this host's signed statement of each host's tree.

A fresh checkpoint is signed first when this host's head is ahead of its newest one, so nothing
this host recorded is left unsigned.  The file is written 0600 beside its destination and renamed
into place: a reader never sees half a bundle.
"""

import base64
import contextlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from colibri.audit import bundle, note
from colibri.audit.entry import leaf_hash
from colibri.audit.merkle import CompactRange
from colibri.audit.note import BadNote
from colibri.errors import AuditError
from colibri.services.audit.signer import AuditSigner
from colibri.store.audit import timestamp
from colibri.store.audit_trail import TrailRepo

Progress = Callable[[int, int], None]
PROGRESS_EVERY = 100_000
MAX_ROW_TEXT = 8192
"""The longest key, endorsement or cosignature text an export reads (colibri writes < 1 KiB)."""
MAX_JUNK_WARNINGS = 20


class _Junk:
    """The rows an export left out, named in its warnings (the first MAX_JUNK_WARNINGS, then a count)."""

    def __init__(self, warnings: list[str]) -> None:
        self.warnings = warnings
        self.count = 0

    def add(self, text: str) -> None:
        self.count += 1
        if self.count <= MAX_JUNK_WARNINGS:
            self.warnings.append(_shown(text, 300))

    def close(self) -> None:
        if self.count > MAX_JUNK_WARNINGS:
            self.warnings.append(f"... and {self.count - MAX_JUNK_WARNINGS} more rows left out as junk")


def _shown(text: str, most: int = 64) -> str:
    """A row's text as a warning shows it: short, printable ASCII (a junk row's text is anyone's)."""
    return "".join(c if c.isascii() and c.isprintable() else "?" for c in str(text)[:most])


def _endorsement(text: str | None) -> dict[str, Any] | None:
    """A key row's endorsement as colibri writes it (by, time, signature: short strings), else None."""
    if not text:
        return None
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None
    fields = ("by", "time", "signature")
    if not isinstance(value, dict) or set(value) != set(fields):
        return None
    if not all(isinstance(value[name], str) and len(value[name]) <= 200 for name in fields):
        return None
    return value


@dataclass(frozen=True)
class Exported:
    path: str
    hosts: dict[str, int]
    checkpoints: int
    cosignatures: int
    keys: int
    signed: int | None
    warnings: list[str]

    def view(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "entries": sum(self.hosts.values()),
            "hosts": self.hosts,
            "checkpoints": self.checkpoints,
            "cosignatures": self.cosignatures,
            "keys": self.keys,
            "fresh_checkpoint_size": self.signed,
            "warnings": self.warnings,
        }


def _line(record: dict[str, Any]) -> bytes:
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def export(signer: AuditSigner, path: Path, progress: Progress | None = None) -> Exported:
    signed = signer.checkpoint()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise AuditError(f"cannot write {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as out:
            result = _write(signer, out, progress)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise AuditError(f"cannot write {path}: {exc.strerror}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return Exported(str(path), result[0], result[1], result[2], result[3], signed.size if signed else None, result[4])


def _write(signer: AuditSigner, out: Any, progress: Progress | None) -> tuple[dict[str, int], int, int, int, list[str]]:
    now = timestamp()
    warnings: list[str] = []
    with signer.store.session() as session:
        repo = TrailRepo(session)
        # every signature first, then the entries: all a checkpoint covers was committed before it
        # was signed, so the entries read after it are there (unless deleted: the evidence stays in)
        # each row bounded (a longer text is no row colibri wrote: counted, never loaded) and each
        # one that is not what colibri writes (a note that does not parse, a root that is not hex)
        # left out with a warning: anyone who can write the table could otherwise make every
        # export too large to write, or unverifiable, with one junk row
        for table, count in repo.oversized(MAX_ROW_TEXT).items():
            if count:
                warnings.append(f"{table}: {count} row(s) longer than {MAX_ROW_TEXT} characters left out (junk)")
        keys = repo.public_keys(max_text=MAX_ROW_TEXT)
        checkpoints = repo.checkpoints(max_note=note.MAX_NOTE)
        cosignatures = repo.cosignatures(max_text=MAX_ROW_TEXT)
        heads = repo.heads()
        hosts = sorted(set(heads) | set(repo.hosts()))
        total = sum(seq for seq, _ in heads.values())
        limit = {h: heads.get(h, (0, ""))[0] for h in hosts}
        out.write(
            _line({"t": "bundle", "format": bundle.FORMAT, "version": bundle.VERSION, "host": signer.host, "time": now})
        )
        junk = _Junk(warnings)
        written_keys = 0
        for key in keys:
            try:
                note.parse_vkey(key.public_key)
            except BadNote as exc:
                junk.add(f"audit_keys: the key row {_shown(key.host)}/{_shown(key.key_id)} left out: {exc}")
                continue
            endorsement = _endorsement(key.endorsement)
            if key.endorsement and endorsement is None:
                junk.add(f"audit_keys: the endorsement of key {_shown(key.key_id)} is not one colibri writes: left out")
            out.write(
                _line(
                    {
                        "t": "key",
                        "host": key.host,
                        "key": key.public_key,
                        "created_at": key.created_at,
                        "retired_at": key.retired_at,
                        "endorsement": endorsement,
                    }
                )
            )
            written_keys += 1
        written_checkpoints = 0
        for row in checkpoints:
            try:
                checkpoint, _ = note.parse(row.note)
                if (checkpoint.host, checkpoint.size, checkpoint.root.hex()) != (row.host, row.size, row.root):
                    raise BadNote("its columns are not what its note says")
            except BadNote as exc:
                junk.add(f"audit_checkpoints: the row {_shown(row.host)}@{row.size} left out: {exc}")
                continue
            out.write(_line({"t": "checkpoint", "host": row.host, "size": row.size, "note": row.note}))
            written_checkpoints += 1
        written_cosignatures = 0
        for cosig in cosignatures:
            try:
                root = base64.b64encode(bytes.fromhex(cosig.root)).decode()
            except ValueError:
                junk.add(f"audit_cosignatures: the row {_shown(cosig.host)}@{cosig.size} left out: its root is not hex")
                continue
            out.write(
                _line(
                    {
                        "t": "cosignature",
                        "host": cosig.host,
                        "size": cosig.size,
                        "root": root,
                        "witness": cosig.witness,
                        "key_id": cosig.key_id,
                        "time": cosig.signed_at,
                        "signature": cosig.signature,
                    }
                )
            )
            written_cosignatures += 1
        junk.close()
        written: dict[str, tuple[int, str]] = {}
        done = 0
        for host in hosts:
            tree = CompactRange()
            count = 0
            for _seq, body, _stored in repo.entries(host):
                out.write(body.encode() + b"\n")
                tree.append(bytes.fromhex(leaf_hash(body.encode())))
                count += 1
                done += 1
                if progress is not None and done % PROGRESS_EVERY == 0:
                    progress(done, total)
            written[host] = (count, tree.root().hex())
            if count != limit[host]:
                warnings.append(f"host {host}: its head says {limit[host]} entries, the store holds {count}")
    key_id, signature = signer.sign_statement(note.export_message(signer.host, now, written))
    out.write(
        _line(
            {
                "t": "export",
                "host": signer.host,
                "time": now,
                "heads": {h: [size, root] for h, (size, root) in written.items()},
                "key_id": key_id,
                "signature": base64.b64encode(signature).decode(),
            }
        )
    )
    if progress is not None:
        progress(done, total)
    counts = written_checkpoints, written_cosignatures, written_keys
    return {h: n for h, (n, _) in written.items()}, *counts, warnings
