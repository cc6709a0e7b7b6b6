"""Reviewer's failing proofs for the daemon (issue 8 review), on a real daemon process."""

from collections.abc import Iterator

import pytest

from tests.integration.hive_harness import Hive, Raw

pytestmark = pytest.mark.integration


@pytest.fixture(name="hive", scope="module")
def hive_fixture() -> Iterator[Hive]:
    hive = Hive()
    hive.tenant("evil")
    hive.start()
    try:
        yield hive
    finally:
        hive.close()


@pytest.mark.parametrize("number", ["1e400", "-1e999"])
def test_an_overflowing_float_is_a_clean_400(hive: Hive, number: str) -> None:
    for path in (hive.socket("evil"), hive.root / "run" / "admin.sock"):
        raw = Raw(path)
        try:
            body = b'{"capability":"echo","tenant":"evil","payload":%s}' % number.encode()
            status, answer = raw("POST", "/v1/tasks", raw=body)
            assert status == 400, (status, answer)
        finally:
            raw.close()
    assert "Traceback" not in hive.log()
