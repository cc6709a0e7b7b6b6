"""An entry's time (store.audit.timestamp): the clock's reading formatted as the entries say it,
with the date and time to the second made once a second (the append's hot path)."""

import time
from datetime import UTC, datetime, timedelta, timezone

import pytest

from colibri.store import audit
from colibri.store.audit import timestamp

FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def test_it_is_the_clock_now_as_text() -> None:
    before = datetime.now(UTC).strftime(FORMAT)
    found = timestamp()
    after = datetime.now(UTC).strftime(FORMAT)
    assert before <= found <= after
    assert datetime.strptime(found, FORMAT).strftime(FORMAT) == found  # the one shape


@pytest.mark.parametrize("ns", [1_764_684_000_999_999_000, 1_764_684_001_000_000_000, 1_764_684_001_000_001_999])
def test_each_reading_is_its_own_second_and_microsecond(monkeypatch: pytest.MonkeyPatch, ns: int) -> None:
    """Across a second's edge the remembered second is not reused: each reading says its own."""
    monkeypatch.setattr(audit, "_SECOND", [(-1, "")])
    for reading in (ns - 1_000_000_000, ns, ns + 1_000, ns + 1_000_000_000):  # a second back, this, later
        monkeypatch.setattr(time, "time_ns", lambda reading=reading: reading)
        want = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=reading // 1000)
        assert timestamp() == want.strftime(FORMAT)


def test_a_given_time_is_said_in_utc() -> None:
    at = datetime(2026, 1, 2, 3, 4, 5, 7, tzinfo=timezone(timedelta(hours=2)))
    assert timestamp(at) == "2026-01-02T01:04:05.000007Z"
