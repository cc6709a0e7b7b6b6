"""The offline verifier's parts (``colibri.audit.verify``): reading lines, the keys to trust, the
export statement, and the second processes that fold trees and check signatures on a spare core.

Pure, like the rest of ``colibri.audit``: no settings, no store, no network.
"""

import hashlib
import json
import os
from collections.abc import Iterator
from multiprocessing.connection import Connection
from typing import IO, Any

from colibri.audit import keychain, merkle, note
from colibri.audit.note import BadNote, PublicKey
from colibri.audit.verify_parts import fail, field_b64, field_text

BLOCK = 1 << 22
MAX_LINE = 1 << 20  # an entry is at most 5 KiB, a record 64 KiB


def trust(
    records: list[dict[str, Any]], trusted: dict[tuple[str, str], PublicKey], successor_time: dict[tuple[str, str], str]
) -> None:
    """Add to ``trusted`` each bundle key a trusted one endorsed (rotations chain); refuse any other."""
    found: list[PublicKey] = []
    endorsements: list[keychain.Endorsement] = []
    for record in records:
        try:
            key = note.parse_vkey(field_text(record.get("key"), "a key"))
        except BadNote as exc:
            raise fail(f"a key of the bundle: {exc}") from None
        if key.host != record.get("host"):
            raise fail(f"key {key.key_id} is named for another host than {str(record.get('host'))[:64]!r}")
        found.append(key)
        endorsement = record.get("endorsement")
        if isinstance(endorsement, dict):
            when = field_text(endorsement.get("time"), "an endorsement's time", 32)
            signature = field_b64(endorsement.get("signature"), "an endorsement's signature")
            endorsements.append(keychain.Endorsement(key, str(endorsement.get("by")), when, signature))
    try:  # a key the bundle endorses by a trusted one becomes trusted (rotations chain)
        successors = keychain.follow(trusted, endorsements)
    except BadNote as exc:
        raise fail(str(exc)) from None
    successor_time.update({ref: when for ref, (_, when) in successors.items()})
    for key in found:
        if (key.name, key.key_id) not in trusted:
            ours = [k.key_id for (name, _), k in trusted.items() if name == key.name]
            why = f"the trusted key of that host is {', '.join(ours)}" if ours else "no --key names that host"
            raise fail(
                f"key {key.key_id} of host {key.host} is not one given with --key nor endorsed by one "
                f"({why}): a swapped or unknown key"
            )


def check_export(
    record: dict[str, Any],
    header: dict[str, Any],
    trusted: dict[tuple[str, str], PublicKey],
    heads_found: dict[str, tuple[int, bytes]],
    successor_time: dict[tuple[str, str], str],
) -> tuple[str, str]:
    """The exporter's signed statement must name exactly the trees the bundle holds; its host and
    the time it signed (what the report shows: the header's copies are not signed)."""
    host = field_text(record.get("host"), "the export's host", 64)
    when = field_text(record.get("time"), "the export's time", 32)
    heads = record.get("heads")
    if host != header.get("host") or not isinstance(heads, dict):
        raise fail("the export statement is malformed")
    if not note.HOST.match(host):
        raise fail(f"the export statement names a malformed host {host!r}")
    if not note.TIME.match(when):
        raise fail(f"the export statement's time {when!r} is malformed")
    claimed: dict[str, tuple[int, str]] = {}
    for name, value in heads.items():
        if not (isinstance(value, list) and len(value) == 2 and isinstance(value[0], int)):
            raise fail("the export statement is malformed")
        if not note.HOST.match(name):
            raise fail(f"the export statement names a malformed host {name[:64]!r}")
        claimed[name] = (int(value[0]), field_text(value[1], "a head's root", 64))
    key = trusted.get((note.key_name(host), str(record.get("key_id"))))
    if key is None:
        raise fail(f"the export statement is signed by an unknown key of host {host}")
    signature = field_b64(record.get("signature"), "the export's signature")
    if not key.verify(signature, note.export_message(host, when, claimed)):
        raise fail("the export statement's signature does not verify")
    retired = successor_time.get((key.name, key.key_id))
    if retired is not None and when > retired:
        raise fail(f"the export statement: signed at {when} by key {key.key_id} of host {host}, retired at {retired}")
    for name in sorted(set(claimed) | set(heads_found)):
        size, root = heads_found.get(name, (0, merkle.EMPTY_ROOT))
        want = claimed.get(name)
        if want is None or want != (size, root.hex()):
            raise fail(
                f"host {name}: the bundle holds {size} entries, the export statement "
                f"{want[0] if want else 0} (entries cut from or added to the file)"
            )
    return host, when


def lines(handle: IO[bytes]) -> Iterator[bytes]:
    """The file's lines without their newline, read in large blocks (a readline a line costs more
    than the hashing)."""
    rest = b""
    while True:
        block = handle.read(BLOCK)
        if not block:
            if rest:
                yield rest
            return
        parts = (rest + block).split(b"\n")
        rest = parts.pop()
        if len(rest) > MAX_LINE:  # a hostile file's endless line is refused, not held in memory
            raise fail(f"a line of the bundle is longer than {MAX_LINE} bytes")
        yield from parts


def open_notes(texts: list[str], keys: list[PublicKey]) -> list[str | None]:
    """Per note, the ``name+key id`` of the trusted key that signed it, or ``!`` and why not."""
    found: list[str | None] = []
    index = {(key.name, key.key_hash): key for key in keys}  # a long chain is looked up, never scanned
    for text in texts:
        try:
            _, signatures = note.parse(text)
            candidates = [index[(name, hash_)] for name, hash_, _ in signatures if (name, hash_) in index]
            _, key = note.open_note(text, candidates)
        except BadNote as exc:
            found.append(f"!{exc}")
            continue
        found.append(f"{key.name}+{key.key_id}")
    return found


def idle_core() -> bool:
    """Whether a second process would get a core of its own (on a busy machine it only competes)."""
    return (os.cpu_count() or 1) >= 2 and os.getloadavg()[0] < (os.cpu_count() or 1) - 1


def root_error(host: str, seq: int, stack: list[bytes], marks: dict[int, tuple[bytes, str]]) -> str | None:
    root, what = marks[seq]
    if merkle.CompactRange(seq, stack).root() == root:
        return None
    since = max((s for s in marks if s < seq), default=0) + 1
    return (
        f"{what}: the entries do not hash to its root: an entry in {host}#{since}..{host}#{seq} "
        "was changed, deleted, inserted or moved"
    )


def fold(conn: Connection, marks: dict[str, dict[int, tuple[bytes, str]]]) -> None:
    """The second process: fold the leaves it is sent into each host's tree, checking every root."""
    heads: dict[str, tuple[int, bytes]] = {}
    error: str | None = None
    sha256 = hashlib.sha256
    host, seq = "", 0
    stack: list[bytes] = []
    mine: dict[int, tuple[bytes, str]] = {}
    while True:
        message = conn.recv_bytes()
        kind = message[:1]
        if kind == b"H":
            host, seq, stack = message[1:].decode(), 0, []
            mine = marks.get(host, {})
        elif kind == b"L" and error is None:
            for at in range(1, len(message), 32):
                value, size = message[at : at + 32], seq
                seq += 1
                while size & 1:
                    value = sha256(b"\x01" + stack.pop() + value).digest()
                    size >>= 1
                stack.append(value)
                if seq in mine:
                    error = root_error(host, seq, stack, mine)
                    if error:
                        break
        elif kind == b"F":
            heads[host] = (seq, merkle.CompactRange(seq, stack).root())
        elif kind == b"E":
            conn.send((heads, error))
            return


def refusal(host: str, seq: int, body: bytes) -> str:
    try:
        value = json.loads(body)
        detail, subject = value["detail"], str(value["subject"])[:80]
        why = str(detail.get("reason", "?"))[:200]
        size = int(detail.get("size", 0))
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return f"entry {host}#{seq}: a malformed cosignature refusal"
    return (
        f"entry {host}#{seq}: host {host} refused to cosign {subject} at size {size}: {why} "
        "(that host's history was rewritten or replayed)"
    )


def ts(body: bytes) -> str | None:
    """The entry's time, if it is one (the hot loop never parses the entry: these are its bytes)."""
    at = body.rfind(b',"ts":"')
    found = body[at + 7 : at + 34].decode("ascii", "replace") if at >= 0 else ""
    return found if note.TIME.match(found) else None
