"""One daemon per run directory: an exclusive flock(2) on ``run_dir/daemon.lock``, held while it runs."""

import fcntl
from pathlib import Path
from typing import TextIO

from colibri.errors import DaemonError


def take_lock(run_dir: Path) -> TextIO:
    """The open lock file, locked; DaemonError when another daemon holds it or the directory is unusable."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True, mode=0o755)
        handle = (run_dir / "daemon.lock").open("a")
    except OSError as exc:
        raise DaemonError(f"cannot use the run directory {run_dir}: {exc.strerror}") from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise DaemonError(f"another colibri daemon is running (it holds {run_dir / 'daemon.lock'})") from None
    return handle
