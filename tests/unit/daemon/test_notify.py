"""notify.py's pure parts: what a notification's payload may be, and the libpq URI of the store."""

import pytest

from colibri.daemon.notify import conninfo, wanted


@pytest.mark.parametrize("payload", ["echo", "build.linux-amd64", "a" * 64])
def test_a_capability_name_is_a_wake_up(payload: str) -> None:
    assert wanted(payload) == payload


@pytest.mark.parametrize("payload", ["", "a" * 65, "echo\x1b[2J", "-flag", "acme/echo", "é", "echo\n"])
def test_anything_else_from_a_peer_is_dropped(payload: str) -> None:
    assert wanted(payload) is None


def test_the_sqlalchemy_url_becomes_a_libpq_uri() -> None:
    assert conninfo("postgresql+psycopg://colibri:s3cret@db:5433/hive") == "postgresql://colibri:s3cret@db:5433/hive"
