"""The one poll-until-deadline helper, on a fake clock."""

import pytest

from colibri.poll import poll_true, poll_until


class Clock:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_returns_the_first_result_and_stops_looking() -> None:
    clock, seen = Clock(), []

    def check() -> str | None:
        seen.append(clock.now)
        return "ready" if len(seen) == 3 else None

    assert poll_until(check, timeout=10, interval=0.5, clock=clock, sleep=clock.sleep) == "ready"
    assert seen == [100.0, 100.5, 101.0]


def test_gives_up_at_the_deadline_after_a_last_look() -> None:
    clock, seen = Clock(), []

    def check() -> None:
        seen.append(clock.now)

    assert poll_until(check, timeout=1.0, interval=0.4, clock=clock, sleep=clock.sleep) is None
    # never sleeps past the deadline, and looks once more at it
    assert clock.sleeps == pytest.approx([0.4, 0.4, 0.2]) and seen[-1] == pytest.approx(101.0)


def test_a_zero_or_negative_wait_is_one_look() -> None:
    clock = Clock()
    calls = []
    assert poll_until(lambda: calls.append(1), timeout=0, clock=clock, sleep=clock.sleep) is None
    assert poll_until(lambda: calls.append(1), timeout=-5, clock=clock, sleep=clock.sleep) is None
    assert calls == [1, 1] and clock.sleeps == []


def test_a_falsy_result_other_than_none_counts() -> None:
    clock = Clock()
    assert poll_until(lambda: 0, timeout=1, clock=clock, sleep=clock.sleep) == 0


def test_errors_from_the_check_pass_through() -> None:
    def check() -> None:
        raise LookupError("gone")

    with pytest.raises(LookupError, match="gone"):
        poll_until(check, timeout=5)


def test_poll_true() -> None:
    flips = iter([False, False, True])
    assert poll_true(lambda: next(flips), timeout=5, interval=0.001) is True
    assert poll_true(lambda: False, timeout=0.01, interval=0.005) is False
