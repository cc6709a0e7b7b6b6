"""What the bastille mixins (mounts.py, enforce.py) use of ``Bastille``: one declaration of it,
so each mixin states its needs once and ``Bastille`` provides them."""

from pathlib import Path

from colibri.adapters.runner import CommandResult, CommandRunner
from colibri.errors import BastilleError


class BastilleCore:
    _run: CommandRunner

    def _bastille_run(self, *args: str, timeout: float = 600.0) -> CommandResult:
        raise NotImplementedError

    def _env(self) -> dict[str, str]:
        raise NotImplementedError

    def _fail(self, what: str, result: CommandResult) -> BastilleError:
        raise NotImplementedError

    def _require(self, name: str) -> None:
        raise NotImplementedError

    def _running(self, name: str) -> bool:
        raise NotImplementedError

    def root(self, name: str) -> Path:
        raise NotImplementedError

    @property
    def jails_dir(self) -> Path:
        raise NotImplementedError
