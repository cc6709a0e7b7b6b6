"""Completions acknowledged while the database is unreachable (issue 11): a local append-only file.

``state_dir/outbox.jsonl``, mode 0600, opened without following a link; each record is one JSON
line written with O_APPEND and fsync'd before the agent is answered, so nothing acknowledged is
only in memory.  The file is bounded (``daemon_outbox_max_bytes``): when full, a result is refused
with 503 as before (the agent keeps retrying).  When the database answers again each record is
replayed through the ordinary completion rule with its lease (and the fence that lease carries):
one whose task was rescued meanwhile is refused there, logged, and dropped; never applied twice
(a repeated completion with the same lease is recognised).  A torn last line (a crash mid-write)
is skipped with a warning.
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


class Outbox:
    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.path = directory / NAME
        self.max_bytes = max_bytes
        self._size: int | None = None
        self._count: int | None = None

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

    def __len__(self) -> int:
        self._measure()
        return self._count or 0

    def append(self, record: dict[str, Any]) -> None:
        """Store one completion durably, or raise StoreError (the outbox is full or unwritable)."""
        line = (json.dumps(record, separators=(",", ":"), ensure_ascii=True) + "\n").encode()
        self._measure()
        assert self._size is not None and self._count is not None
        if self._size + len(line) > self.max_bytes or self._count >= MAX_RECORDS:
            raise StoreError("the database is unavailable and the local outbox is full; try again later")
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
            self._size = self._count = None
            raise StoreError(f"the database is unavailable and the outbox cannot be written: {exc.strerror}") from None
        self._size += len(line)
        self._count += 1

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
        rest = self.records()[count:]
        if not rest:
            self.path.unlink(missing_ok=True)
            self._size = self._count = 0
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


def _sync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
