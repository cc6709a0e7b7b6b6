"""Running the mother skill on the host, in a home directory (``spawn-local``: no jail)."""

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

from colibri.errors import JailError


class LocalHome:
    """The mother as a detached host process owned by the home directory's owner."""

    def __init__(self, home: Path, python: str = "/usr/bin/python3") -> None:
        self.home = home
        self.state = home / ".colibri"
        self._python = python

    def owner(self) -> tuple[int, int]:
        st = self.home.stat()
        return st.st_uid, st.st_gid

    def pid(self) -> int | None:
        """The mother's pid when it runs (checked against /proc, so a reused pid does not count)."""
        try:
            pid = int((self.state / "mother.pid").read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return None
        return pid if b"mother.py" in cmdline else None

    def start(self, skill: Path, identity: Path) -> int:
        running = self.pid()
        if running:
            return running
        uid, gid = self.owner()
        argv = [self._python, str(skill), "--identity", str(identity)]
        if os.geteuid() == 0 and uid != 0:
            argv = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--no-new-privs", *argv]
        env = {"PATH": "/usr/bin:/bin", "HOME": str(self.home), "LANG": "C.UTF-8"}
        with (self.state / "mother.log").open("ab") as log:
            try:
                proc = subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, cwd=self.home,
                    start_new_session=True,
                )  # fmt: skip
            except FileNotFoundError as exc:
                raise JailError(f"cannot start the mother skill: {exc.filename} not found") from None
        (self.state / "mother.pid").write_text(f"{proc.pid}\n")
        return proc.pid

    def stop(self, timeout: float = 10.0) -> None:
        pid = self.pid()
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.pid() == pid:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            time.sleep(0.05)
        if self.pid() == pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        (self.state / "mother.pid").unlink(missing_ok=True)
