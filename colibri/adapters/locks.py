"""Host-wide locks (fcntl) under colibri's run directory: bastille has none of its own."""

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from colibri.errors import CommandTimeout, StateConflict
from colibri.poll import poll_true


@contextlib.contextmanager
def host_lock(locks_dir: Path, name: str, *, wait: float | None = 600.0) -> Iterator[None]:
    """Hold ``locks_dir/name.lock`` exclusively.

    ``wait=None`` fails at once with StateConflict when another process holds it (naming its pid);
    otherwise wait up to ``wait`` seconds, then CommandTimeout.  The kernel drops the lock when
    the holder dies, even by kill -9, so a crash never leaves it stuck.
    """
    locks_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = locks_dir / f"{name}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        _acquire(fd, path, wait)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)


def _acquire(fd: int, path: Path, wait: float | None) -> None:
    def take() -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    if take():
        return
    if wait is None:
        holder = path.read_text().strip() or "?"
        raise StateConflict(f"{path.stem} is busy: another colibri process (pid {holder}) holds it")
    if not poll_true(take, timeout=wait, interval=0.05):
        raise CommandTimeout(f"waiting for the lock {path}", wait)
