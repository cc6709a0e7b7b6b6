"""How the lifecycle reports its steps: ``on_step(tenant, step, state, detail)``."""

from collections.abc import Callable

from colibri.errors import ColibriError

StepCallback = Callable[[str, str, str, str], None]
"""on_step(tenant, step, state, detail) with state in start | done | skip | fail."""


def _quiet(tenant: str, step: str, state: str, detail: str) -> None:
    return None


class _step:
    """Report a step's start, then done (with a detail) or fail (with the error)."""

    def __init__(self, report: StepCallback, tenant: str, step: str) -> None:
        self._report, self._tenant, self._step = report, tenant, step
        self._detail = ""

    def __enter__(self) -> Callable[[str], None]:
        self._report(self._tenant, self._step, "start", "")
        return self._say

    def _say(self, detail: str) -> None:
        self._detail = detail

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        if exc is None:
            self._report(self._tenant, self._step, "done", self._detail)
        elif isinstance(exc, ColibriError):
            self._report(self._tenant, self._step, "fail", str(exc))
