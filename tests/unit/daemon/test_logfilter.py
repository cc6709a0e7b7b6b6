"""Log lines rate-limited per cause, with the count of what was suppressed."""

import logging

import pytest

from colibri.daemon import logfilter
from colibri.daemon.logfilter import RateLimit, about


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_flood_of_one_cause_is_cut_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    limit = RateLimit(lines=5, interval=10, clock=clock)
    logger = logging.getLogger("colibri.test.flood")
    logger.addFilter(limit)
    try:
        with caplog.at_level(logging.INFO, logger="colibri.test.flood"):
            for n in range(10_000):
                logger.warning("accept failed on socket %s", n)
                if n < 3:
                    logger.info("another cause %s", n)
            assert len([r for r in caplog.records if "accept failed" in r.getMessage()]) == 5
            assert len([r for r in caplog.records if "another cause" in r.getMessage()]) == 3
            clock.now = 11
            limit.flush(logger)
            summary = [r.getMessage() for r in caplog.records if "suppressed" in r.getMessage()]
            assert summary == ["9995 similar log lines suppressed in 10 s, like: accept failed on socket 0"]
            logger.warning("accept failed on socket %s", "again")  # a new window
            assert caplog.records[-1].getMessage() == "accept failed on socket again"
    finally:
        logger.removeFilter(limit)


def test_the_next_window_says_how_many_were_suppressed(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    limit = RateLimit(lines=1, interval=10, clock=clock)
    logger = logging.getLogger("colibri.test.window")
    logger.addFilter(limit)
    try:
        with caplog.at_level(logging.INFO, logger="colibri.test.window"):
            for _ in range(4):
                logger.warning("same")
            clock.now = 10
            logger.warning("same")
        assert [r.getMessage() for r in caplog.records] == [
            "same", "same [3 similar lines suppressed before this one]",
        ]  # fmt: skip
    finally:
        logger.removeFilter(limit)


def test_one_tenants_flood_does_not_hide_another_tenants_lines(caplog: pytest.LogCaptureFixture) -> None:
    limit = RateLimit(lines=3, interval=10, clock=Clock())
    logger = logging.getLogger("colibri.test.tenants")
    logger.addFilter(limit)
    try:
        with caplog.at_level(logging.INFO, logger="colibri.test.tenants"):
            for n in range(100):
                logger.info("agent %s registered", f"evil/e{n}", extra=about(f"evil/e{n}"))
            logger.info("agent %s registered", "good/g1", extra=about("good/g1"))
        shown = [r.getMessage() for r in caplog.records]
        assert len([m for m in shown if "evil/" in m]) == 3
        assert "agent good/g1 registered" in shown
    finally:
        logger.removeFilter(limit)


def test_causes_stay_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logfilter, "MAX_CAUSES", 10)
    limit = RateLimit(lines=1, interval=10, clock=Clock())
    for n in range(1000):
        record = logging.LogRecord("x", logging.INFO, "f", 1, "line", None, None)
        record.tenant = f"t{n}"
        limit.filter(record)
    assert len(limit._seen) <= 11  # the bound, plus the shared overflow window
