"""Completions acknowledged while the database is unreachable (issue 11): a local append-only file.

``state_dir/outbox.jsonl``, mode 0600, opened without following a link; each record is one JSON
line written with O_APPEND and fsync'd before the agent is answered, so nothing acknowledged is
only in memory.  The file is bounded (``daemon_outbox_max_bytes``): when full, a result is refused
with 503 as before (the agent keeps retrying).  When the database answers again each record is
replayed through the ordinary completion rule with its lease (and the fence that lease carries):
one whose task was rescued meanwhile is refused there, logged, and dropped; never applied twice
(a repeated completion with the same lease is recognised).  A torn last line (a crash mid-write)
is skipped with a warning.

One tenant cannot fill it for the others (review R5): besides the whole file's bounds, each owner
of a record (the tenant, or the lane, whose socket the result came in on: its ``scope``) may hold
at most as much as the outbox would still have free after the append, in bytes and in records.
Alone it gets half the outbox; with ``k`` owners filling it each gets ``1/(k+1)`` and as much stays
free for everyone else, so an owner with nothing kept (a tenant whose agent has one real result)
finds room while hogs are refused.  A refused result is the same 503 (store down, try again later)
its agent already handles.  The replay (daemon/replay.py) takes the owners in turn, each one's
records in their order.
"""

import json
import logging
import os
from pathlib import Path
from typing import Any

from colibri.errors import StoreError

log = logging.getLogger("colibri.daemon")
NAME = "outbox.jsonl"
MAX_RECORDS = 100_000


def owner_of(record: dict[str, Any]) -> str:
    """Whose share a record counts in: its scope as ``kind:name`` ("tenant:acme", "lane:linux");
    "" for a record without a readable one (counted together)."""
    scope = record.get("scope")
    if isinstance(scope, list) and len(scope) == 2 and all(isinstance(part, str) for part in scope):
        return f"{scope[0]}:{scope[1]}"
    return ""


class Outbox:
    def __init__(self, directory: Path, max_bytes: int, max_records: int = MAX_RECORDS) -> None:
        self.path = directory / NAME
        self.max_bytes = max_bytes
        self.max_records = max_records
        self._size: int | None = None
        self._count: int | None = None
        self._owned: dict[str, list[int]] = {}  # owner -> [bytes, records] kept in the file

    def _open(self, flags: int) -> int:
        return os.open(self.path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)

    def _measure(self) -> None:
        if self._size is None or self._count is None:
            try:
                with self.path.open("rb") as handle:
                    data = handle.read(self.max_bytes + 1)
            except FileNotFoundError:
                data = b""
            self._size, self._count = len(data), data.count(b"\n")
            self._owned = {}
            for line in data.splitlines(keepends=True):
                self._note(_owner_of_line(line), len(line))

    def _note(self, owner: str, size: int) -> None:
        held = self._owned.setdefault(owner, [0, 0])
        held[0] += size
        held[1] += 1

    def held(self, owner: str) -> tuple[int, int]:
        """(bytes, records) the owner (``owner_of``) holds in the outbox."""
        self._measure()
        size, count = self._owned.get(owner, (0, 0))
        return size, count

    def _refusal(self, owner: str, size: int) -> str | None:
        """Why a line of ``size`` bytes of ``owner`` cannot be kept, or None."""
        assert self._size is not None and self._count is not None
        size_after, count_after = self._size + size, self._count + 1
        if size_after > self.max_bytes or count_after > self.max_records:
            return "the database is unavailable and the local outbox is full; try again later"
        held_bytes, held_records = self._owned.get(owner, (0, 0))
        if held_bytes + size > self.max_bytes - size_after or held_records + 1 > self.max_records - count_after:
            who = owner.replace(":", " ", 1) if owner else "unscoped results"
            return f"the database is unavailable and {who}'s share of the local outbox is full; try again later"
        return None

    def __len__(self) -> int:
        self._measure()
        return self._count or 0

    def append(self, record: dict[str, Any]) -> None:
        """Store one completion durably, or raise StoreError (the outbox is full or unwritable)."""
        line = (json.dumps(record, separators=(",", ":"), ensure_ascii=True) + "\n").encode()
        owner = owner_of(record)
        self._measure()
        assert self._size is not None and self._count is not None
        refused = self._refusal(owner, len(line))
        if refused is not None:
            raise StoreError(refused)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            new = not self.path.exists()
            fd = self._open(os.O_RDWR | os.O_CREAT | os.O_APPEND)
            try:
                os.fchmod(fd, 0o600)
                end = os.fstat(fd).st_size
                if end and os.pread(fd, 1, end - 1) != b"\n":
                    line = b"\n" + line  # after a torn last line: this record starts a line of its own
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)
            if new:
                _sync_directory(self.path.parent)
        except OSError as exc:
            self._size = self._count = None  # measured again (and the owners' shares) next time
            raise StoreError(f"the database is unavailable and the outbox cannot be written: {exc.strerror}") from None
        self._size += len(line)
        self._count += 1
        self._note(owner, len(line))

    def records(self) -> list[dict[str, Any]]:
        """The stored completions, oldest first (malformed lines skipped with a warning)."""
        try:
            fd = self._open(os.O_RDONLY)
        except FileNotFoundError:
            return []
        with os.fdopen(fd, "rb") as handle:
            data = handle.read(self.max_bytes + 1)
        found: list[dict[str, Any]] = []
        for number, line in enumerate(data.splitlines(), 1):
            try:
                record = json.loads(line)
            except ValueError:
                log.warning("outbox line %d is not a record (a torn write?); skipped", number)
                continue
            if isinstance(record, dict):
                found.append(record)
        return found

    def drop_first(self, count: int) -> None:
        """The ``count`` oldest records were replayed: the file keeps the rest, including any
        appended meanwhile (call with no await between reading and this, on the event loop)."""
        self.drop(set(range(count)))

    def drop(self, done: set[int]) -> None:
        """The records at these positions of ``records()`` were replayed: the file keeps the rest,
        in order, including any appended meanwhile (appends only add at the end; call with no
        await between reading and this, on the event loop)."""
        rest = [record for index, record in enumerate(self.records()) if index not in done]
        if not rest:
            self.path.unlink(missing_ok=True)
            self._size = self._count = 0
            self._owned = {}
            return
        temporary = self.path.with_suffix(".tmp")
        temporary.unlink(missing_ok=True)
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            for record in rest:
                handle.write((json.dumps(record, separators=(",", ":")) + "\n").encode())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.path)
        _sync_directory(self.path.parent)
        self._size = self._count = None


def _owner_of_line(line: bytes) -> str:
    try:
        record = json.loads(line)
    except ValueError:
        return ""  # a torn line still takes room: counted as unscoped
    return owner_of(record) if isinstance(record, dict) else ""


def _sync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
