"""A schema-driven fuzzer: schemathesis reads docs/openapi.yaml and drives the real daemon.

Schemathesis generates each operation's requests from the document (path parameters from their
patterns, query parameters within and outside their bounds, bodies that fit their schema and
bodies that do not) and checks each answer against the document: no 500, only a status that
operation documents, the documented content type, headers and schema.  A request goes to every
socket the operation names in ``x-socket``: the admin socket and a tenant's socket of a real
daemon process, over AF_UNIX (a requests adapter; nothing is mocked).  Bounded: a fixed number
of examples per operation and mode, long-polls kept to a few hundredths of a second.
"""

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
import urllib3
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from requests.adapters import HTTPAdapter
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.integration.hive_harness import REPO, Hive

pytestmark = pytest.mark.integration
DOCUMENT = REPO / "docs" / "openapi.yaml"
SPEC: dict[str, Any] = yaml.safe_load(DOCUMENT.read_text())
# A request that breaks the schema must be refused: 400, or 413/414/431 when it breaks a size
# limit, or 403/404/409/429 when the daemon refuses it for its own reason first.
REFUSED = ["400", "403", "404", "409", "413", "414", "429", "431"]
CONFIG = schemathesis.config.SchemathesisConfig.from_dict(
    {"checks": {"negative_data_rejection": {"expected-statuses": REFUSED}}}
)
SCHEMA = schemathesis.openapi.from_path(DOCUMENT, config=CONFIG)
TENANT = "fuzzer"
EXAMPLES = 40
SHORT_WAIT = 0.02  # a valid long-poll is cut to this, to keep the run bounded
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance]  # fmt: skip
OPERATIONS = [
    pytest.param(path, method.upper(), op["x-socket"], mode, id=f"{method.upper()} {path} {mode.value}")
    for path, item in SPEC["paths"].items()
    for method, op in item.items()
    if method in ("get", "head", "post", "delete")
    for mode in GenerationMode
    if mode == GenerationMode.POSITIVE or op.get("parameters") or op.get("requestBody")  # else: nothing to break
]


class UnixConnection(urllib3.connection.HTTPConnection):
    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("colibri", timeout=timeout)
        self.unix_path = path

    def _new_conn(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(10)
        sock.connect(str(self.unix_path))
        return sock


class UnixPool(urllib3.HTTPConnectionPool):
    def __init__(self, path: Path) -> None:
        super().__init__("colibri", maxsize=1)
        self.unix_path = path

    def _new_conn(self) -> UnixConnection:  # type: ignore[override]
        return UnixConnection(self.unix_path, 10)


class UnixAdapter(HTTPAdapter):
    """requests over one Unix socket: every URL goes to ``path``."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.pool = UnixPool(path)

    def get_connection_with_tls_context(self, *args: Any, **kwargs: Any) -> urllib3.HTTPConnectionPool:
        return self.pool

    def close(self) -> None:
        self.pool.close()
        super().close()


def session(path: Path) -> requests.Session:
    client = requests.Session()
    client.trust_env = False  # no proxy from the environment for a Unix socket
    client.mount("http://", UnixAdapter(path))
    return client


@pytest.fixture(name="hive", scope="module")
def hive_fixture() -> Iterator[Hive]:
    hive = Hive()
    hive.tenant(TENANT)
    hive.start()
    try:
        yield hive
        assert hive.admin.health()["status"] == "ok"
        assert "internal error" not in hive.log() and "Traceback" not in hive.log()
    finally:
        assert hive.stop() == 0
        hive.close()


def shorten(case: Any) -> None:
    """A valid wait (the query's, the claim body's) is cut short; an invalid one is left as it is."""
    for holder in (case.query, case.body):
        wait = holder.get("wait") if isinstance(holder, dict) else None
        if isinstance(wait, int | float) and not isinstance(wait, bool) and 0 <= wait <= 30:
            holder["wait"] = SHORT_WAIT


@pytest.mark.parametrize(("path", "method", "sockets", "mode"), OPERATIONS)
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))  # fmt: skip
@given(data=st.data())
def test_every_answer_is_documented(
    hive: Hive, path: str, method: str, sockets: list[str], mode: GenerationMode, data: Any
) -> None:
    operation = SCHEMA[path][method]
    case = data.draw(operation.as_strategy(generation_mode=mode))
    shorten(case)
    checks = CHECKS + ([negative_data_rejection] if mode == GenerationMode.NEGATIVE else [])
    for kind in sockets:
        if kind == "agent" and not hive.socket(TENANT).exists():
            hive.admin.open_tenant_socket(TENANT)  # an example closed it (DELETE .../socket)
        client = session(hive.root / "run" / "admin.sock" if kind == "admin" else hive.socket(TENANT))
        try:
            response = case.call(base_url="http://colibri", session=client)
            case.validate_response(response, checks=checks)
        finally:
            client.close()


def test_the_document_lists_every_status_the_daemon_can_answer() -> None:
    """Each status colibri's HTTP layer has a reason phrase for is documented on the operations,
    except 405 (a method no operation has) and 500 (a bug), which the description covers."""
    from colibri.daemon.http import REASONS

    documented = {int(s) for item in SPEC["paths"].values() for op in item.values() for s in op["responses"]}
    assert documented | {405, 500} == set(REASONS), sorted(set(REASONS) ^ (documented | {405, 500}))
    description = SPEC["info"]["description"]
    assert "**405**" in description and "**500**" in description
