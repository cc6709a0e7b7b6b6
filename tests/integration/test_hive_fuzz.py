"""Fuzz the real daemon with requests generated from docs/openapi.yaml (hypothesis).

Bodies follow each operation's schema, or are mutated into anything JSON can be; every answer
must be a status the document lists (or a generic 400/404/405/413), with a well-formed JSON
error envelope, and never a 500.  The daemon must still be healthy afterwards.
"""

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from colibri.daemon.api import Api
from colibri.daemon.http import Request
from tests.integration.hive_harness import REPO, Hive, Raw

pytestmark = pytest.mark.integration
SPEC = yaml.safe_load((REPO / "docs" / "openapi.yaml").read_text())
GENERIC = {400, 404, 405, 413}
OPERATIONS = [
    (path, method.upper(), op)
    for path, item in SPEC["paths"].items()
    for method, op in item.items()
    if method in ("get", "post", "delete")
]
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)


def resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        node: Any = SPEC
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def from_schema(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    schema = resolve(schema)
    kind = schema.get("type")
    if "enum" in schema:
        return st.sampled_from(schema["enum"]) | st.text(max_size=10)
    if kind == "object":
        props = {k: from_schema(v) for k, v in schema.get("properties", {}).items()}
        required = [k for k in schema.get("required", []) if k in props]
        optional = {k: v for k, v in props.items() if k not in required}
        return st.fixed_dictionaries({k: props[k] for k in required}, optional=optional)
    if kind == "array":
        return st.lists(from_schema(schema.get("items", {})), max_size=4)
    if kind == "string" and "pattern" in schema:
        return st.from_regex(schema["pattern"], fullmatch=True) | st.text(max_size=30)
    simple = {"string": st.text(max_size=30), "integer": st.integers(), "number": st.floats(allow_nan=False),
              "boolean": st.booleans()}  # fmt: skip
    return simple.get(kind, JSON_VALUES) if isinstance(kind, str) else JSON_VALUES


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


def fill(path: str, draw: Any) -> str:
    return re.sub(
        r"\{(\w+)\}", lambda m: draw(st.sampled_from(["1", "fuzz", "0", "x y", "99999999999999999999"])), path
    )


@pytest.mark.parametrize(("path", "method", "op"), OPERATIONS, ids=[f"{m} {p}" for p, m, _ in OPERATIONS])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_operation_answers_as_documented(hive: Hive, path: str, method: str, op: dict[str, Any], data: Any) -> None:
    url = fill(path, data.draw)
    body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
    payload = None
    if body is not None:
        payload = data.draw(from_schema(body) | JSON_VALUES)
        if isinstance(payload, dict) and "wait" in payload:
            payload["wait"] = 0
    url = url.replace(" ", "%20")
    sockets = [hive.root / "run" / "admin.sock" if s == "admin" else hive.socket("fuzz") for s in op["x-socket"]]
    for socket_path in sockets:
        raw = Raw(socket_path)
        try:
            status, answer = raw(method, url, body=payload) if payload is not None else raw(method, url)
        finally:
            raw.close()
        documented = {int(s) for s in op["responses"]} | GENERIC | {403, 503}
        assert status in documented, (method, url, payload, status, answer)
        assert status != 500
        if status >= 400:
            assert set(answer["error"]) == {"type", "code", "message"}
        elif status not in (204,) and path != "/metrics":
            assert isinstance(answer, dict)


def test_the_document_and_the_routers_agree() -> None:
    api = Api(daemon=None)  # type: ignore[arg-type]
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
