"""Running external commands: the one place that imports ``sh``.

Secrets travel on stdin or in the child's own environment, never in argv.  sh's own exceptions
embed the full argv and up to 750 bytes of output, so none of them escapes this module: they are
re-raised as colibri errors ``from None``, with output kept only when the caller says it is safe.
"""

import logging
import shutil
from collections.abc import Collection, Mapping, Sequence
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
    ) -> CommandResult: ...


def stderr_tail(stderr: bytes, limit: int = 300) -> str:
    """The last non-empty line of stderr, cut to ``limit`` characters: enough to say why."""
    lines = [ln.strip() for ln in stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
    return lines[-1][:limit] if lines else ""


class ShRunner:
    """Runs commands with ``sh``: no tty, a fixed base environment, a timeout on every call."""

    def __init__(self, base_env: Mapping[str, str]) -> None:
        self._base_env = dict(base_env)

    def __call__(
        self,
        argv: Sequence[str],
        *,
        stdin: bytes | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float = 120.0,
        ok_codes: Collection[int] = (0,),
        secret_output: bool = False,
    ) -> CommandResult:
        """Run ``argv``; raise ToolMissing, CommandTimeout or CommandFailed (without output when
        ``secret_output``, since it may hold secrets)."""
        import sh

        shown = tuple(argv)
        child_env = {**self._base_env, **(env or {})}
        # Find the program on the child's PATH, not on ours (sh would use os.environ's).
        program = shutil.which(argv[0], path=child_env.get("PATH")) if "/" not in argv[0] else argv[0]
        try:
            command = sh.Command(program or argv[0])
        except sh.CommandNotFound:
            raise ToolMissing(argv[0]) from None
        try:
            proc = command(
                *argv[1:],
                _in=stdin if stdin is not None else b"",
                _env=child_env,
                _timeout=timeout,
                _ok_code=list(ok_codes),
                _tty_out=False,
                _tty_in=False,
                _return_cmd=True,
                _decode_errors="replace",
            )
        except sh.TimeoutException:
            raise CommandTimeout(" ".join(shown[:3]), timeout) from None
        except sh.ErrorReturnCode as exc:
            detail = "" if secret_output else stderr_tail(exc.stderr)
            raise CommandFailed(shown, exc.exit_code, detail) from None
        return CommandResult(shown, int(proc.exit_code), bytes(proc.stdout), bytes(proc.stderr))
