"""A detached child process of the daemon (``colibri spawn-child``): its own session, no stdin,
its output appended to a log file (0700 directory).  The daemon's one place that starts a process."""

import asyncio
from collections.abc import Sequence
from pathlib import Path


async def start(argv: Sequence[str], log_file: Path) -> asyncio.subprocess.Process:
    """Start ``argv`` in a new session with its stdout and stderr appended to ``log_file``."""
    log_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with log_file.open("ab") as out:
        return await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True
        )
