"""Running the mother skill on the host, in a home directory (``spawn-local``: no jail)."""

import contextlib
import os
import signal
import stat
from pathlib import Path

from colibri.adapters import host, jailfs
from colibri.errors import JailError
from colibri.poll import poll_true


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
        """The mother's pid when it runs: a mother.py process of the home's owner (the pid file
        lives in a directory that user controls, so its word alone is not trusted)."""
        try:
            pid = int(jailfs.read_file(self.home, ".colibri/mother.pid", limit=32).strip())
        except (OSError, ValueError, JailError):
            return None
        argv, owner = host.cmdline(pid), host.effective_uid(pid)
        if argv is None or owner is None or not any("mother.py" in arg for arg in argv):
            return None
        try:
            return pid if owner == self.owner()[0] else None
        except OSError:
            return None

    def start(self, skill: Path, identity: Path) -> int:
        running = self.pid()
        if running:
            return running
        uid, gid = self.owner()
        argv = [self._python, str(skill), "--identity", str(identity)]
        if os.geteuid() == 0 and uid != 0:
            argv = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--no-new-privs", *argv]
        env = {"PATH": "/usr/bin:/bin", "HOME": str(self.home), "LANG": "C.UTF-8"}
        fd = self._open_log()
        # posix_spawn in a session of its own: a detached process, not a Popen object that would
        # complain about a child still running when colibri exits.
        actions = [
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_DUP2, fd, 1),
            (os.POSIX_SPAWN_DUP2, fd, 2),
            (os.POSIX_SPAWN_CLOSE, fd),
        ]
        old_cwd = os.getcwd()
        try:
            os.chdir(self.home)
            pid = os.posix_spawnp(argv[0], argv, env, file_actions=actions, setsid=True)
        except FileNotFoundError as exc:
            raise JailError(f"cannot start the mother skill: {exc.filename or argv[0]} not found") from None
        finally:
            os.chdir(old_cwd)
            os.close(fd)
        jailfs.write_file(self.home, ".colibri/mother.pid", f"{pid}\n".encode(), mode=0o644)
        return pid

    def _open_log(self) -> int:
        """``.colibri/mother.log`` for appending.  The directory belongs to the home's owner and we
        may be root: no symlink is followed (a planted link must not make us append to another
        file), and only a regular file is kept (non-blocking open: a FIFO there would block us
        until someone read it; a device node is refused before it is opened)."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
        shown = self.state / "mother.log"
        with jailfs.open_dir(self.home, ".colibri") as dirfd:
            try:
                with contextlib.suppress(FileNotFoundError):
                    if not stat.S_ISREG(os.stat("mother.log", dir_fd=dirfd, follow_symlinks=False).st_mode):
                        raise JailError(f"refusing {shown}: not a regular file")
                fd = os.open("mother.log", flags, 0o600, dir_fd=dirfd)
            except OSError as exc:
                raise JailError(f"cannot open {shown}: {exc.strerror}") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise JailError(f"refusing {shown}: not a regular file")
        os.set_blocking(fd, True)
        return fd

    def stop(self, timeout: float = 10.0) -> None:
        pid = self.pid()
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)

        def gone() -> bool:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)  # reap it if it is our child
            return self.pid() != pid

        if not poll_true(gone, timeout=timeout, interval=0.05):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with jailfs.open_dir(self.home, ".colibri") as dirfd, contextlib.suppress(FileNotFoundError):
            os.unlink("mother.pid", dir_fd=dirfd)
