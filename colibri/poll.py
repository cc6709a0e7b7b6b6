"""Poll until a deadline: the one loop colibri's waits share (the mother skill keeps its own,
stdlib-only).

``poll_until(check, timeout=...)`` calls ``check`` at once, then every ``interval`` seconds, until
it returns something other than ``None`` (returned) or the deadline passes (``None``).  ``check``
is always called at least once, and once more at the deadline, so a wait of 0 is a single look
and a condition met just in time is not missed.  Exceptions from ``check`` pass through: a check
that knows the wait is hopeless (the process is gone, the mother refused) raises.  The clock and
the sleep are injectable, so tests run without waiting."""

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def poll_until(
    check: Callable[[], T | None],
    *,
    timeout: float,
    interval: float = 0.1,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> T | None:
    """The first non-None result of ``check`` within ``timeout`` seconds, else None."""
    deadline = clock() + max(timeout, 0.0)
    while True:
        result = check()
        if result is not None:
            return result
        left = deadline - clock()
        if left <= 0:
            return None
        sleep(min(interval, left))


def poll_true(check: Callable[[], bool], *, timeout: float, interval: float = 0.1) -> bool:
    """``poll_until`` for a yes/no condition: True once ``check`` is true, False at the deadline."""
    return poll_until(lambda: True if check() else None, timeout=timeout, interval=interval) is True
