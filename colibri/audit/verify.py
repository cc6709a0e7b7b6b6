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

import binascii
import hashlib
import itertools
import json
import multiprocessing
import multiprocessing.process
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from colibri.audit import bundle, merkle, note
from colibri.audit import verify_work as work
from colibri.audit.note import BadNote, Checkpoint, PublicKey
from colibri.audit.verify_parts import HostReport, Report, fail, field_b64, field_text, read_record
from colibri.errors import AuditError

GENESIS = b"0" * 64
FOLD_BLOCK = 32 * 8192  # leaves sent to the folding process at a time
FOLD_ASIDE_BYTES = 16 << 20  # bundles from this size on fold their trees in a second process
PARALLEL_NOTES = 256  # from this many checkpoints on, their signatures are checked in a second process
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
        self.notes: list[tuple[str, str, str]] = []  # (note, where, its time) in file order
        self.found: list[str | None] = []
        self.pool: ProcessPoolExecutor | None = None
        self.folder: Connection | None = None
        self.folding: multiprocessing.process.BaseProcess | None = None
        self.heads: dict[str, tuple[int, bytes]] = {}

    def host(self, name: str) -> HostReport:
        if name not in self.hosts:
            self.hosts[name] = HostReport(name)
        return self.hosts[name]

    # ---- keys ----------------------------------------------------------------------------------
    def keys(self, records: list[dict[str, Any]]) -> None:
        work.trust(records, self.trusted, self.successor_time)
        for name, _ in self.given:
            self.host(name.removeprefix(note.PREFIX))

    # ---- checkpoints and cosignatures ------------------------------------------------------------
    def checkpoint(self, record: dict[str, Any]) -> None:
        """Its size, root and order now; its signature with the others (``signatures``)."""
        text = field_text(record.get("note"), "a checkpoint's note", note.MAX_NOTE)
        try:
            checkpoint, _ = note.parse(text)
        except BadNote as exc:
            raise fail(f"a checkpoint: {exc}") from None
        where = f"checkpoint of host {checkpoint.host} at size {checkpoint.size}"
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
        self.notes.append((text, where, checkpoint.time))
        report = self.host(checkpoint.host)
        report.checkpoints += 1
        report.newest_size, report.newest_time = checkpoint.size, checkpoint.time

    def signatures(self) -> "Future[list[str | None]] | None":
        """Start checking every checkpoint's signature: in a second process when there are many
        (two cores halve a million-entry verify), else now; ``checked`` takes the answers."""
        keys = list(self.trusted.values())
        texts = [text for text, _, _ in self.notes]
        if len(texts) < PARALLEL_NOTES or not work.idle_core():
            self.found = work.open_notes(texts, keys)
            return None
        self.pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork"))
        return self.pool.submit(work.open_notes, texts, keys)

    def fold_aside(self) -> None:
        """Fold the trees in a second process (a large bundle: the hot loop then only chains)."""
        context = multiprocessing.get_context("fork")
        mine, theirs = context.Pipe()
        self.folding = context.Process(target=work.fold, args=(theirs, self.marks), daemon=True)
        self.folding.start()
        theirs.close()
        self.folder = mine

    def folded(self) -> None:
        if self.folder is None:
            return
        self.folder.send_bytes(b"E")
        heads, error = self.folder.recv()
        self.stop_folding()
        if error:
            raise fail(error)
        for host, (_, root) in heads.items():
            self.heads[host] = (self.heads[host][0], root)

    def stop_folding(self) -> None:
        if self.folding is not None:
            assert self.folder is not None
            self.folder.close()
            self.folding.join(5)
            if self.folding.is_alive():
                self.folding.kill()
            self.folding = None

    def checked(self, pending: "Future[list[str | None]] | None") -> None:
        if pending is not None:
            try:
                self.found = pending.result()
            finally:
                assert self.pool is not None
                self.pool.shutdown()
        for (_text, where, when), found in zip(self.notes, self.found, strict=True):
            if found is None or found.startswith("!"):
                raise fail(f"{where}: {found[1:] if found else 'not verified'}")
            retired = self.successor_time.get(tuple(found.split("+")))  # type: ignore[arg-type]
            if retired is not None and when > retired:
                raise fail(f"{where}: signed at {when} by key {found.split('+')[1]}, retired at {retired}")

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
            message = note.cosign_message(checkpoint, when)  # names the host: raises on a malformed one
        except BadNote as exc:
            raise fail(f"{where}: {exc}") from None
        key = self.trusted.get((name, str(record.get("key_id"))))
        if key is None:
            raise fail(f"{where}: signed by an unknown key {str(record.get('key_id'))[:16]}")
        if not key.verify(signature, message):
            raise fail(f"{where}: the signature does not verify")
        if witness == host:
            raise fail(f"{where}: a host's cosignature of its own tree witnesses nothing")
        retired = self.successor_time.get((name, key.key_id))
        if retired is not None and when > retired:
            raise fail(f"{where}: signed at {when} by key {key.key_id}, retired at {retired}")
        self._mark(host, size, root, where)
        report = self.host(host)
        report.cosigned_by.add(witness)
        report.cosigned_size = max(report.cosigned_size, size)
        self.cosignatures += 1

    # ---- entries -------------------------------------------------------------------------------
    def entries(self, first: bytes, lines: Iterator[bytes], progress: Progress | None) -> bytes:
        """Every entry line from ``first`` on; the first line after them (b"" at the end)."""
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
        except (ValueError, KeyError, TypeError, RecursionError):
            raise fail("an entry is not a colibri audit entry") from None
        if not isinstance(host, str) or not note.HOST.match(host):
            raise fail("an entry names no valid host")
        return host

    def _chain(self, host: str, first: bytes, lines: Iterator[bytes]) -> tuple[bytes, int]:
        """The hot loop: per entry a find, two compares, the leaf hash and (on average) one node hash."""
        marks = self.marks.get(host, {})
        report = self.host(host)
        newest_size = report.newest_size
        sha256 = hashlib.sha256
        stack: list[bytes] = []
        prev = GENESIS
        seq = 0
        host_token = b',"host":"' + host.encode() + b'","outcome":"'
        first_unsigned: bytes | None = None
        pending = b""
        folder = self.folder  # None: the tree is folded here; else by the second process
        hexlify = binascii.hexlify
        leaves = bytearray()
        if folder is not None:
            folder.send_bytes(b"H" + host.encode())
        for body in itertools.chain((first,), lines):
            at = body.rfind(b',"prev":"')
            if body[at + 9 : at + 73] != prev:  # the next host's first entry, a record, or a broken chain
                if self._ends_chain(host, seq, body, at, host_token):
                    pending = body
                    break
                raise self._broken(host, seq + 1, body, prev)
            seq += 1
            # every entry says its own host and seq (the top-level host is the last one before prev:
            # detail sorts before it and outcome's string cannot hold a quote), not only at a mark
            if not (
                body.startswith(b'","seq":%d,' % seq, at + 73)
                and body.startswith(host_token, body.rfind(b',"host":"', 0, at))
            ):
                raise self._misplaced(host, seq, body)
            digest = sha256(b"\x00" + body).digest()
            prev = hexlify(digest)
            if folder is None:
                value, size = digest, seq - 1
                while size & 1:
                    value = sha256(b"\x01" + stack.pop() + value).digest()
                    size >>= 1
                stack.append(value)
                if seq in marks:
                    error = work.root_error(host, seq, stack, marks)
                    if error:
                        raise fail(error)
            else:
                leaves += digest
                if len(leaves) >= FOLD_BLOCK:
                    folder.send_bytes(b"L" + leaves)
                    leaves = bytearray()
            if seq == newest_size + 1:
                first_unsigned = body
            if body.startswith(REFUSAL) and b',"outcome":"refused",' in body:
                self.refusals.append(work.refusal(host, seq, body))
        if folder is None:
            self.heads[host] = (seq, merkle.CompactRange(seq, stack).root())
        else:
            folder.send_bytes(b"L" + leaves)
            folder.send_bytes(b"F")
            self.heads[host] = (seq, b"")  # the root comes with the folder's answer (``folded``)
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
            report.unsigned_since = work.ts(first_unsigned)
        return pending, seq

    @staticmethod
    def _ends_chain(host: str, seq: int, body: bytes, at: int, host_token: bytes) -> bool:
        """Whether a line that does not continue ``host``'s chain ends it (a record, or another host's
        first entry) rather than breaking it."""
        if not body.startswith(bundle.ENTRY_START):
            return True
        if at < 0:
            raise fail(f"entry {host}#{seq + 1}: not a colibri audit entry")
        ours = body.startswith(host_token, body.rfind(b',"host":"', 0, at))
        return not ours and body[at + 9 : at + 73] == GENESIS

    @staticmethod
    def _misplaced(host: str, seq: int, body: bytes) -> AuditError:
        """An entry chained into ``host``'s log at ``seq`` that says it is another host's or seq's."""
        try:
            value = json.loads(body)
        except (ValueError, RecursionError):
            return fail(f"entry {host}#{seq}: not JSON")
        value = value if isinstance(value, dict) else {}
        names, says = value.get("host"), value.get("seq")
        named = names if isinstance(names, str) and note.HOST.match(names) else "no valid host"
        return fail(
            f"entry {host}#{seq}: it says it is entry {named}#{str(says)[:20]}: an entry written "
            f"into host {host}'s chain under another host's name or seq"
        )

    def _broken(self, host: str, seq: int, body: bytes, prev: bytes) -> AuditError:
        try:
            value = json.loads(body)
        except (ValueError, RecursionError):
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
    def export(self, record: dict[str, Any], header: dict[str, Any]) -> tuple[str, str]:
        """The exporter and the time it signed (the header's own copies are not signed)."""
        return work.check_export(record, header, self.trusted, self.heads, self.successor_time)


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
        size = os.fstat(handle.fileno()).st_size
        lines = work.lines(handle)
        header = read_record(next(lines, b""), "header")
        if header.get("t") != "bundle" or header.get("format") != bundle.FORMAT or header.get("version") != 1:
            raise fail("not a colibri audit bundle (or another version)")
        line = next(lines, b"")
        keys: list[dict[str, Any]] = []
        while line.startswith(b'{"t":"key"'):
            keys.append(read_record(line, "key"))
            line = next(lines, b"")
        checker.keys(keys)
        while line.startswith(b'{"t":"checkpoint"'):
            checker.checkpoint(read_record(line, "checkpoint"))
            line = next(lines, b"")
        while line.startswith(b'{"t":"cosignature"'):
            checker.cosignature(read_record(line, "cosignature"))
            line = next(lines, b"")
        pending = checker.signatures()
        if size > FOLD_ASIDE_BYTES and work.idle_core():
            checker.fold_aside()
        try:
            line = checker.entries(line, lines, progress)
            checker.folded()
        except BaseException:
            checker.stop_folding()
            if checker.pool is not None:
                checker.pool.shutdown(cancel_futures=True)
            raise
        checker.checked(pending)
        if not line.startswith(b'{"t":"export"'):
            raise fail(
                "the file ends without the export statement (cut short?)"
                if not line
                else "a record out of place after the entries"
            )
        exported_by, exported_at = checker.export(read_record(line, "export"), header)
        if next(lines, b""):
            raise fail("data after the export statement")
    if checker.refusals:
        raise fail(checker.refusals[0])
    for name, report in checker.hosts.items():
        if name not in checker.heads and (report.checkpoints or report.cosigned_size):
            raise fail(f"host {name}: signed checkpoints but no entries in the bundle: all its entries were deleted")
    return Report(
        exported_by,
        exported_at,
        checker.hosts,
        sorted(f"{k.name}+{k.key_id}" for k in checker.trusted.values()),
        checker.cosignatures,
    )
