"""Running external commands: the one place that imports ``sh``.

Secrets travel on stdin or in the child's own environment, never in argv.  sh's own exceptions
embed the full argv and up to 750 bytes of output, so none of them escapes this module: they are
re-raised as colibri errors ``from None``, with output kept only when the caller says it is safe.

Output is bounded: a command that prints more than ``max_output`` bytes on stdout or stderr is
killed (its whole process group) and the call fails, so a jail's command cannot grow the host's
memory.  Every command runs in a new session: it, and any jail process it starts, has no
controlling terminal and never reaches the operator's.

A caller that knows when a command's answer is whole (``complete``) gets it as soon as it is: the
command's group is killed then, not waited for (bw idles about 2 s on timers after it answers).
"""

import contextlib
import logging
import os
import selectors
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from colibri.errors import CommandFailed, CommandTimeout, ToolMissing

# sh logs every command line at INFO; argv is safe by our rules, but keep logs quiet anyway.
logging.getLogger("sh").setLevel(logging.WARNING)


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    exit_code: int
    stdout: bytes
    stderr: bytes
    stopped: bool = False
    """The command was killed once ``complete`` found its stdout whole; ``exit_code`` is then 0."""

    @property
    def out(self) -> str:
        return self.stdout.decode("utf-8", "replace")

    @property
    def err(self) -> str:
        return self.stderr.decode("utf-8", "replace")


class CommandRunner(Protocol):
    def __call__(
        self,
        argv: Sequence[str],
        *,
        stdin: bytes | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float = 120.0,
        ok_codes: Collection[int] = (0,),
        secret_output: bool = False,
        complete: Callable[[bytearray], bool] | None = None,
    ) -> CommandResult: ...


def stderr_tail(stderr: bytes, limit: int = 300) -> str:
    """The last non-empty line of stderr, cut to ``limit`` characters: enough to say why."""
    lines = [ln.strip() for ln in stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
    return lines[-1][:limit] if lines else ""


MAX_OUTPUT = 4 << 20
"""Bytes a command may print on each of stdout and stderr before it is killed (4 MiB)."""
_CHUNK = 1 << 16


class _Capture:
    """sh's output callback for one stream: keeps the head up to ``limit`` bytes; past it, kills
    the command's process group and stops collecting (sh then only drains the pipe)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.chunks: list[bytes] = []
        self.size = 0
        self.overflow = False

    def __call__(self, chunk: str | bytes, _stdin: object, process: object) -> bool:
        # sh hands a chunk over decoded when it is valid UTF-8 (strictly), as bytes otherwise:
        # encoding a decoded chunk again gives back exactly its bytes.
        data = chunk.encode("utf-8") if isinstance(chunk, str) else chunk
        if self.size + len(data) > self.limit:
            self.overflow = True
            pid = getattr(process, "pid", None)
            if isinstance(pid, int) and pid > 0:
                with contextlib.suppress(OSError):
                    os.killpg(pid, signal.SIGKILL)  # a new session: its group is its pid
            return True  # no more calls: nothing more is kept
        self.chunks.append(data)
        self.size += len(data)
        return False

    def data(self) -> bytes:
        return b"".join(self.chunks)


class ShRunner:
    """Runs commands with ``sh``: no tty (a new session, so no controlling terminal either), a
    fixed base environment, a timeout on every call, output bounded by ``max_output``."""

    def __init__(self, base_env: Mapping[str, str], *, max_output: int = MAX_OUTPUT) -> None:
        self._base_env = dict(base_env)
        self._max_output = max_output

    def __call__(
        self,
        argv: Sequence[str],
        *,
        stdin: bytes | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float = 120.0,
        ok_codes: Collection[int] = (0,),
        secret_output: bool = False,
        complete: Callable[[bytearray], bool] | None = None,
    ) -> CommandResult:
        """Run ``argv``; raise ToolMissing, CommandTimeout or CommandFailed (without output when
        ``secret_output``, since it may hold secrets).  ``complete``, called with all of stdout
        after each read (keep it cheap), says when the answer is whole: the command's group is
        then killed and the result has ``stopped`` and exit status 0.  Only for a command that
        writes nothing after its answer and prints it only on success."""
        import sh

        shown = tuple(argv)
        child_env = {**self._base_env, **(env or {})}
        # Find the program on the child's PATH, not on ours (sh would use os.environ's).
        program = shutil.which(argv[0], path=child_env.get("PATH")) if "/" not in argv[0] else argv[0]
        if complete is not None:
            run = _Until(shown, program or argv[0], child_env, timeout, self._max_output, complete)
            code, stdout, stderr, stopped = run(stdin)
            if not stopped and code not in ok_codes:
                raise CommandFailed(shown, code, "" if secret_output else stderr_tail(stderr))
            return CommandResult(shown, 0 if stopped else code, stdout, stderr, stopped)
        try:
            command = sh.Command(program or argv[0])
        except sh.CommandNotFound:
            raise ToolMissing(argv[0]) from None
        out, err = _Capture(self._max_output), _Capture(self._max_output)
        try:
            proc = command(
                *argv[1:],
                _in=stdin if stdin is not None else b"",
                _out=out,
                _err=err,
                _out_bufsize=_CHUNK,  # fixed chunks: line buffering would hold a line of any length
                _err_bufsize=_CHUNK,
                _encoding="utf-8",
                _decode_errors="strict",  # see _Capture: a chunk that is not UTF-8 stays bytes
                _env=child_env,
                _timeout=timeout,
                _ok_code=list(ok_codes),
                _tty_out=False,
                _tty_in=False,
                _new_session=True,
                _done=_kill_group_on_timeout,
                _return_cmd=True,
            )
        except sh.TimeoutException:
            raise CommandTimeout(" ".join(shown[:3]), timeout) from None
        except sh.ErrorReturnCode as exc:
            _check_size(shown, exc.exit_code, out, err)
            detail = "" if secret_output else stderr_tail(err.data())
            raise CommandFailed(shown, exc.exit_code, detail) from None
        _check_size(shown, int(proc.exit_code), out, err)
        return CommandResult(shown, int(proc.exit_code), out.data(), err.data())


def _kill_group_on_timeout(command: object, _success: bool, _exit_code: int) -> None:
    """sh's timeout kills the command's pid only: kill what it started too (its group)."""
    process, pid = getattr(command, "process", None), getattr(command, "pid", None)
    if getattr(process, "timed_out", False) and isinstance(pid, int) and pid > 0:
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGKILL)


def _check_size(shown: tuple[str, ...], exit_code: int, out: _Capture, err: _Capture) -> None:
    for stream, capture in (("stdout", out), ("stderr", err)):
        if capture.overflow:
            detail = f"more than {capture.limit} bytes on {stream}: output too large (killed)"
            raise CommandFailed(shown, exit_code, detail)


class _Until:
    """One command run until it exits or ``complete`` finds its stdout whole (sh hands a callback
    its output only in full buffers or byte by byte, so this reads the pipes itself)."""

    def __init__(
        self,
        shown: tuple[str, ...],
        program: str,
        env: Mapping[str, str],
        timeout: float,
        limit: int,
        complete: Callable[[bytearray], bool],
    ) -> None:
        self._shown, self._program, self._env = shown, program, dict(env)
        self._timeout, self._limit, self._complete = timeout, limit, complete

    def __call__(self, stdin: bytes | None) -> tuple[int, bytes, bytes, bool]:
        try:
            proc = subprocess.Popen(
                [self._program, *self._shown[1:]],
                stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=self._env,
                start_new_session=True,  # no controlling terminal; its group is its pid
                close_fds=True,
            )
        except OSError:
            raise ToolMissing(self._shown[0]) from None
        try:
            return self._pump(proc, stdin or b"")
        finally:
            if proc.poll() is None:
                _kill_group(proc.pid)
                proc.wait()
            for pipe in (proc.stdin, proc.stdout, proc.stderr):
                if pipe is not None:
                    pipe.close()

    def _pump(self, proc: "subprocess.Popen[bytes]", stdin: bytes) -> tuple[int, bytes, bytes, bool]:
        assert proc.stdout is not None and proc.stderr is not None
        end = time.monotonic() + self._timeout
        out, err = bytearray(), bytearray()
        buffers = {proc.stdout.fileno(): out, proc.stderr.fileno(): err}
        with selectors.DefaultSelector() as selector:
            for fd in buffers:
                selector.register(fd, selectors.EVENT_READ)
            if proc.stdin is not None:
                os.set_blocking(proc.stdin.fileno(), False)
                selector.register(proc.stdin.fileno(), selectors.EVENT_WRITE)
            while selector.get_map():
                left = end - time.monotonic()
                if left <= 0:
                    raise CommandTimeout(" ".join(self._shown[:3]), self._timeout)
                for key, _ in selector.select(left):
                    if key.fd not in buffers:  # stdin
                        stdin = stdin[_write(key.fd, stdin) :]
                        if not stdin:
                            selector.unregister(key.fd)
                            assert proc.stdin is not None
                            proc.stdin.close()
                        continue
                    chunk = os.read(key.fd, _CHUNK)
                    if not chunk:
                        selector.unregister(key.fd)
                        continue
                    buffer = buffers[key.fd]
                    if len(buffer) + len(chunk) > self._limit:
                        stream = "stdout" if buffer is out else "stderr"
                        detail = f"more than {self._limit} bytes on {stream}: output too large (killed)"
                        raise CommandFailed(self._shown, -signal.SIGKILL, detail)
                    buffer += chunk
                    if buffer is out and self._complete(out):
                        _kill_group(proc.pid)
                        proc.wait()
                        return 0, bytes(out), bytes(err), True
        try:
            code = proc.wait(max(0.0, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise CommandTimeout(" ".join(self._shown[:3]), self._timeout) from None
        return code, bytes(out), bytes(err), False


def _write(fd: int, data: bytes) -> int:
    try:
        return os.write(fd, data[:_CHUNK])
    except BlockingIOError:
        return 0
    except BrokenPipeError:
        return len(data)  # it stopped reading: the rest is dropped, as sh does


def _kill_group(pid: int) -> None:
    with contextlib.suppress(OSError):
        os.killpg(pid, signal.SIGKILL)
