"""``colibri audit verify``: check a bundle offline, trusting only the public keys given.

No settings, no store, no network: this module imports only the rest of ``colibri.audit`` (pure)
and ``colibri.errors``.  One pass over the file: keys (each one given, or endorsed by one given),
checkpoints (each signed by a trusted key of its host, sizes and times increasing), cosignatures
(each by a trusted key of the witness), then every host's entries, chained (each names its
predecessor's leaf, seq counting from 1) and folded into a compact range whose root must equal
every checkpoint's and cosignature's root at its size; last the exporter's signed statement of
every host's tree.  The first failure raises AuditError naming the host, the entry or checkpoint,
and why.
"""

import hashlib
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

from colibri.audit import bundle, merkle, note
from colibri.audit.note import BadNote, Checkpoint, PublicKey
from colibri.audit.verify_parts import HostReport, Report, fail, field_b64, field_text, read_record
from colibri.errors import AuditError

GENESIS = b"0" * 64
REFUSAL = b'{"action":"audit.cosign",'
Progress = Callable[[int], None]


class _Verifier:
    def __init__(self, trusted: Iterable[PublicKey]) -> None:
        self.trusted: dict[tuple[str, str], PublicKey] = {(k.name, k.key_id): k for k in trusted}
        self.given = set(self.trusted)
        self.hosts: dict[str, HostReport] = {}
        self.marks: dict[str, dict[int, tuple[bytes, str]]] = {}  # host -> size -> (root, what)
        self.checkpoint_times: dict[str, list[tuple[int, str]]] = {}
        self.successor_time: dict[tuple[str, str], str] = {}
        self.cosignatures = 0
        self.refusals: list[str] = []
        self.done: set[str] = set()
        self.heads: dict[str, tuple[int, bytes]] = {}

    def host(self, name: str) -> HostReport:
        if name not in self.hosts:
            self.hosts[name] = HostReport(name)
        return self.hosts[name]

    # ---- keys ----------------------------------------------------------------------------------
    def keys(self, records: list[dict[str, Any]]) -> None:
        found: list[tuple[PublicKey, dict[str, Any]]] = []
        for record in records:
            try:
                key = note.parse_vkey(field_text(record.get("key"), "a key"))
            except BadNote as exc:
                raise fail(f"a key of the bundle: {exc}") from None
            if key.host != record.get("host"):
                raise fail(f"key {key.key_id} is named for another host than {str(record.get('host'))[:64]!r}")
            found.append((key, record))
        changed = True
        while changed:  # a key the bundle endorses by a trusted one becomes trusted (rotations chain)
            changed = False
            for key, record in found:
                endorsement = record.get("endorsement")
                if (key.name, key.key_id) in self.trusted or not isinstance(endorsement, dict):
                    continue
                by = self.trusted.get((key.name, str(endorsement.get("by"))))
                when = field_text(endorsement.get("time"), "an endorsement's time", 32)
                signature = field_b64(endorsement.get("signature"), "an endorsement's signature")
                if by is not None and by.verify(signature, note.endorse_message(key, when)):
                    self.trusted[(key.name, key.key_id)] = key
                    self.successor_time[(by.name, by.key_id)] = when
                    changed = True
        for key, _record in found:
            if (key.name, key.key_id) not in self.trusted:
                ours = [k.key_id for (name, _), k in self.trusted.items() if name == key.name]
                why = f"the trusted key of that host is {', '.join(ours)}" if ours else "no --key names that host"
                raise fail(
                    f"key {key.key_id} of host {key.host} is not one given with --key nor endorsed by one "
                    f"({why}): a swapped or unknown key"
                )
        for name, _ in self.given:
            self.host(name.removeprefix(note.PREFIX))

    # ---- checkpoints and cosignatures ------------------------------------------------------------
    def checkpoint(self, record: dict[str, Any]) -> None:
        text = field_text(record.get("note"), "a checkpoint's note", note.MAX_NOTE)
        try:
            checkpoint, _ = note.parse(text)
        except BadNote as exc:
            raise fail(f"a checkpoint: {exc}") from None
        where = f"checkpoint of host {checkpoint.host} at size {checkpoint.size}"
        try:
            checkpoint, key = note.open_note(text, self.trusted.values())
        except BadNote as exc:
            raise fail(f"{where}: {exc}") from None
        retired = self.successor_time.get((key.name, key.key_id))
        if retired is not None and checkpoint.time > retired:
            raise fail(f"{where}: signed at {checkpoint.time} by key {key.key_id}, retired at {retired}")
        times = self.checkpoint_times.setdefault(checkpoint.host, [])
        if times and (checkpoint.size <= times[-1][0] or checkpoint.time <= times[-1][1]):
            raise fail(
                f"{where} (signed {checkpoint.time}) does not come after the one at size {times[-1][0]} "
                f"(signed {times[-1][1]}): checkpoints out of order or an old one replayed"
            )
        if checkpoint.size == 0:
            raise fail(f"{where}: an empty tree is never signed")
        times.append((checkpoint.size, checkpoint.time))
        self._mark(checkpoint.host, checkpoint.size, checkpoint.root, where)
        report = self.host(checkpoint.host)
        report.checkpoints += 1
        report.newest_size, report.newest_time = checkpoint.size, checkpoint.time

    def _mark(self, host: str, size: int, root: bytes, what: str) -> None:
        marks = self.marks.setdefault(host, {})
        if size in marks and marks[size][0] != root:
            raise fail(f"{what}: another root than {marks[size][1]} for the same size (a forked history)")
        marks.setdefault(size, (root, what))

    def cosignature(self, record: dict[str, Any]) -> None:
        host = field_text(record.get("host"), "a cosignature's host", 64)
        witness = field_text(record.get("witness"), "a cosignature's witness", 64)
        size, when = record.get("size"), field_text(record.get("time"), "a cosignature's time", 32)
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise fail("a cosignature's size is malformed")
        where = f"cosignature by host {witness} of host {host} at size {size}"
        root = field_b64(record.get("root"), f"{where}: the root")
        signature = field_b64(record.get("signature"), f"{where}: the signature")
        try:
            checkpoint = Checkpoint(host, size, root, when)
            name = note.key_name(witness)
        except BadNote as exc:
            raise fail(f"{where}: {exc}") from None
        key = self.trusted.get((name, str(record.get("key_id"))))
        if key is None:
            raise fail(f"{where}: signed by an unknown key {str(record.get('key_id'))[:16]}")
        if not key.verify(signature, note.cosign_message(checkpoint, when)):
            raise fail(f"{where}: the signature does not verify")
        self._mark(host, size, root, where)
        report = self.host(host)
        report.cosigned_by.add(witness)
        report.cosigned_size = max(report.cosigned_size, size)
        self.cosignatures += 1

    # ---- entries -------------------------------------------------------------------------------
    def entries(self, first: bytes, lines: IO[bytes], progress: Progress | None) -> bytes:
        """Every entry line from ``first`` on; the first line after them."""
        line = first
        total = 0
        while line.startswith(bundle.ENTRY_START):
            host = self._host_of(line)
            if host in self.done:
                raise fail(f"entries of host {host} are not together (entry after another host's)")
            line, count = self._chain(host, line, lines)
            self.done.add(host)
            total += count
            if progress is not None:
                progress(total)
        return line

    @staticmethod
    def _host_of(line: bytes) -> str:
        try:
            value = json.loads(line)
            host = value["host"]
        except (ValueError, KeyError, TypeError):
            raise fail("an entry is not a colibri audit entry") from None
        if not isinstance(host, str) or not note.HOST.match(host):
            raise fail("an entry names no valid host")
        return host

    def _chain(self, host: str, line: bytes, lines: IO[bytes]) -> tuple[bytes, int]:
        marks = self.marks.get(host, {})
        report = self.host(host)
        newest_size = report.newest_size
        sha256 = hashlib.sha256
        stack: list[bytes] = []
        prev = GENESIS
        seq = 0
        host_token = b',"host":"' + host.encode() + b'",'
        first_unsigned: bytes | None = None
        while line.startswith(bundle.ENTRY_START):
            body = line[:-1] if line.endswith(b"\n") else line
            at = body.rfind(b',"prev":"')
            if body.rfind(host_token, 0, at) < 0:  # the next host's entries (or no prev at all)
                if at < 0:
                    raise fail(f"entry {host}#{seq + 1}: not a colibri audit entry")
                break
            seq += 1
            if body[at + 9 : at + 73] != prev or not body.startswith(b'","seq":%d,' % seq, at + 73):
                raise self._broken(host, seq, body, prev)
            digest = sha256(b"\x00" + body).digest()
            prev = digest.hex().encode()
            value, size = digest, seq - 1
            while size & 1:
                value = sha256(b"\x01" + stack.pop() + value).digest()
                size >>= 1
            stack.append(value)
            if seq in marks:
                self._check_root(host, seq, stack, marks)
            if seq == newest_size + 1:
                first_unsigned = body
            if body.startswith(REFUSAL) and b',"outcome":"refused",' in body:
                self.refusals.append(_refusal(host, seq, body))
            line = lines.readline()
        self.heads[host] = (seq, merkle.CompactRange(seq, stack).root())
        for size in marks:
            if size > seq:
                what = marks[size][1]
                raise fail(
                    f"host {host}: {what} covers {size} entries but the bundle holds {seq}: "
                    f"entries {host}#{seq + 1}..{size} were deleted"
                )
        report.entries = seq
        report.unsigned = seq - newest_size
        if first_unsigned is not None:
            report.unsigned_since = _ts(first_unsigned)
        return line, seq

    def _check_root(self, host: str, seq: int, stack: list[bytes], marks: dict[int, tuple[bytes, str]]) -> None:
        root, what = marks[seq]
        if merkle.CompactRange(seq, stack).root() != root:
            earlier = [s for s in marks if s < seq]
            since = max(earlier) + 1 if earlier else 1
            raise fail(
                f"{what}: the entries do not hash to its root: an entry in {host}#{since}..{host}#{seq} "
                "was changed, deleted, inserted or moved"
            )

    def _broken(self, host: str, seq: int, body: bytes, prev: bytes) -> AuditError:
        try:
            value = json.loads(body)
        except ValueError:
            return fail(f"entry {host}#{seq}: not JSON")
        found = value.get("seq") if isinstance(value, dict) else None
        if found != seq:
            return fail(
                f"entry {host}#{seq}: the entry there says seq {str(found)[:20]}: an entry was deleted, "
                "inserted or moved"
            )
        if seq == 1:
            return fail(f"entry {host}#1: its prev is not the genesis hash")
        return fail(
            f"entry {host}#{seq}: its prev is not the hash of entry {host}#{seq - 1}: entry {host}#{seq - 1} "
            "was changed (or one was removed or inserted there)"
        )

    # ---- the export statement ------------------------------------------------------------------
    def export(self, record: dict[str, Any], header: dict[str, Any]) -> None:
        host = field_text(record.get("host"), "the export's host", 64)
        when = field_text(record.get("time"), "the export's time", 32)
        heads = record.get("heads")
        if host != header.get("host") or not isinstance(heads, dict):
            raise fail("the export statement is malformed")
        claimed: dict[str, tuple[int, str]] = {}
        for name, value in heads.items():
            if not (isinstance(value, list) and len(value) == 2 and isinstance(value[0], int)):
                raise fail("the export statement is malformed")
            claimed[str(name)] = (int(value[0]), field_text(value[1], "a head's root", 64))
        key = self.trusted.get((note.key_name(host), str(record.get("key_id"))))
        if key is None:
            raise fail(f"the export statement is signed by an unknown key of host {host}")
        signature = field_b64(record.get("signature"), "the export's signature")
        if not key.verify(signature, note.export_message(host, when, claimed)):
            raise fail("the export statement's signature does not verify")
        for name in sorted(set(claimed) | set(self.heads)):
            size, root = self.heads.get(name, (0, merkle.EMPTY_ROOT))
            want = claimed.get(name)
            if want is None or want != (size, root.hex()):
                raise fail(
                    f"host {name}: the bundle holds {size} entries, the export statement "
                    f"{want[0] if want else 0} (entries cut from or added to the file)"
                )


def _refusal(host: str, seq: int, body: bytes) -> str:
    try:
        value = json.loads(body)
        detail, subject = value["detail"], str(value["subject"])[:80]
        why = str(detail.get("reason", "?"))[:200]
        size = int(detail.get("size", 0))
    except (ValueError, KeyError, TypeError, AttributeError):
        return f"entry {host}#{seq}: a malformed cosignature refusal"
    return (
        f"entry {host}#{seq}: host {host} refused to cosign {subject} at size {size}: {why} "
        "(that host's history was rewritten or replayed)"
    )


def _ts(body: bytes) -> str | None:
    at = body.rfind(b',"ts":"')
    return body[at + 7 : at + 34].decode("ascii", "replace") if at >= 0 else None


def verify(path: Path, trusted: Iterable[PublicKey], progress: Progress | None = None) -> Report:
    """Verify the bundle at ``path``; its report, or AuditError naming the first failure."""
    checker = _Verifier(trusted)
    if not checker.trusted:
        raise AuditError("audit verify needs at least one --key")
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise AuditError(f"cannot read {path}: {exc.strerror}") from None
    with handle:
        header = read_record(handle.readline(), "header")
        if header.get("t") != "bundle" or header.get("format") != bundle.FORMAT or header.get("version") != 1:
            raise fail("not a colibri audit bundle (or another version)")
        line = handle.readline()
        keys: list[dict[str, Any]] = []
        while line.startswith(b'{"t":"key"'):
            keys.append(read_record(line, "key"))
            line = handle.readline()
        checker.keys(keys)
        while line.startswith(b'{"t":"checkpoint"'):
            checker.checkpoint(read_record(line, "checkpoint"))
            line = handle.readline()
        while line.startswith(b'{"t":"cosignature"'):
            checker.cosignature(read_record(line, "cosignature"))
            line = handle.readline()
        line = checker.entries(line, handle, progress)
        if not line.startswith(b'{"t":"export"'):
            raise fail(
                "the file ends without the export statement (cut short?)"
                if not line
                else "a record out of place after the entries"
            )
        checker.export(read_record(line, "export"), header)
        if handle.readline():
            raise fail("data after the export statement")
    if checker.refusals:
        raise fail(checker.refusals[0])
    for name, report in checker.hosts.items():
        if name not in checker.heads and (report.checkpoints or report.cosigned_size):
            raise fail(f"host {name}: signed checkpoints but no entries in the bundle: all its entries were deleted")
    return Report(
        str(header.get("host")),
        str(header.get("time")),
        checker.hosts,
        sorted(f"{k.name}+{k.key_id}" for k in checker.trusted.values()),
        checker.cosignatures,
    )
