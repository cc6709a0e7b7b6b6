"""The document and the routers agree, and raw bytes never break the real daemon (hypothesis).

The schema-driven fuzzer (every answer a status its operation documents, never a 500) is
tests/integration/test_api_fuzz.py.
"""

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from colibri.daemon.api import Api
from colibri.daemon.http import Request
from tests.integration.hive_harness import REPO, Hive

pytestmark = pytest.mark.integration
SPEC = yaml.safe_load((REPO / "docs" / "openapi.yaml").read_text())
OPERATIONS = [
    (path, method.upper(), op)
    for path, item in SPEC["paths"].items()
    for method, op in item.items()
    if method in ("get", "post", "delete")
]


@pytest.fixture(name="hive", scope="module")
def hive_fixture() -> Iterator[Hive]:
    hive = Hive()
    hive.tenant("fuzz")
    hive.start()
    try:
        yield hive
    finally:
        assert hive.admin.health()["status"] == "ok"
        assert hive.stop() == 0
        hive.close()


def test_the_document_and_the_routers_agree() -> None:
    api = Api(parts=None)  # type: ignore[arg-type]
    routers = {"admin": api.admin, "agent": api.agent}
    for path, method, op in OPERATIONS:
        concrete = re.sub(r"\{\w+\}", "1", path)
        for socket in op["x-socket"]:
            assert callable(routers[socket].match(Request(method, concrete, {}, {}, b""))), (socket, method, path)
    documented = {(m, re.sub(r"\{\w+\}", "1", p)) for p, m, _ in OPERATIONS}
    for router in routers.values():
        for pattern, methods in router._routes:
            template = re.sub(r"\(\?P<\w+>\[\^/\]\+\)", "1", pattern.pattern.strip("^$"))
            for method in methods:
                assert (method, template) in documented, (method, template)


def test_raw_bytes_never_break_the_daemon(hive: Hive) -> None:
    from tests.integration.hive_harness import raw_exchange

    hive.admin.open_tenant_socket("fuzz")  # the operation fuzzing may have closed it (DELETE)

    @settings(max_examples=60, deadline=None)
    @given(junk=st.binary(max_size=300))
    def poke(junk: bytes) -> None:
        answer = raw_exchange(hive.socket("fuzz"), junk + b"\r\n\r\n", timeout=5)
        assert answer == b"" or answer.startswith(b"HTTP/1.1 ")
        assert b" 500 " not in answer.split(b"\r\n")[0]

    poke()
    assert json.loads(json.dumps(hive.admin.health()))["status"] == "ok"


def test_spec_is_versioned() -> None:
    assert SPEC["info"]["version"] == "1"
    assert all(p.startswith("/v1/") or p in ("/health", "/metrics") for p in SPEC["paths"])
    assert Path(REPO / "docs" / "openapi.yaml").exists()
