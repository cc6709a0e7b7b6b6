"""notify.py's pure parts: what a notification's payload may be, and the libpq URI of the store."""

import pytest
from psycopg.conninfo import conninfo_to_dict

from colibri.daemon.notify import conninfo, wanted


@pytest.mark.parametrize("payload", ["echo", "build.linux-amd64", "a" * 64])
def test_a_capability_name_is_a_wake_up(payload: str) -> None:
    assert wanted(payload) == payload


@pytest.mark.parametrize("payload", ["", "a" * 65, "echo\x1b[2J", "-flag", "acme/echo", "é", "echo\n"])
def test_anything_else_from_a_peer_is_dropped(payload: str) -> None:
    assert wanted(payload) is None


def test_the_sqlalchemy_url_becomes_a_libpq_conninfo() -> None:
    found = conninfo_to_dict(conninfo("postgresql+psycopg://colibri:s3cret@db:5433/hive"))
    assert found == {"host": "db", "port": "5433", "user": "colibri", "password": "s3cret", "dbname": "hive"}


def test_a_primary_and_its_replica_stay_two_hosts() -> None:
    """The listener must follow a promotion like the store's connections (target_session_attrs)."""
    url = "postgresql+psycopg://colibri@/hive?host=10.0.0.10:5432&host=10.0.0.11:5433&target_session_attrs=read-write"
    found = conninfo_to_dict(conninfo(url))
    assert (found["host"], found["port"], found["target_session_attrs"]) == ("10.0.0.10,10.0.0.11", "5432,5433",
                                                                             "read-write")  # fmt: skip
