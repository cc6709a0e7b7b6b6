"""``--json`` output is ``json.dumps(indent=2, sort_keys=True)`` byte for byte, whichever renderer
writes it (orjson where it agrees, the hand-written one where it does not, or without orjson)."""

import io
import json
import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from colibri.cli import output

KEYS = st.text(max_size=8)
LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(["\x7f", "\x1b[31m", "\u2028", "é", "\ud800", "/", "\\", '"', "%s", "1e-05"])
)
VALUES = st.recursive(
    LEAVES,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(KEYS, inner, max_size=4)
        | st.lists(st.dictionaries(st.sampled_from(["a", "b", "c"]), inner, max_size=3), max_size=3)
    ),
    max_leaves=20,
)


def _emitted(data: Any) -> str:
    out, sys.stdout = sys.stdout, io.StringIO()
    try:
        output.emit_json(data)
        return sys.stdout.getvalue()
    finally:
        sys.stdout = out


def _stdlib(data: Any) -> str:
    return json.dumps({"ok": True, "data": data}, indent=2, sort_keys=True) + "\n"


@settings(max_examples=400, deadline=None)
@given(VALUES)
def test_any_value_is_the_stdlibs_bytes(data: Any) -> None:
    assert _emitted(data) == _stdlib(data)


@settings(max_examples=150, deadline=None)
@given(VALUES)
def test_without_orjson_too(data: Any) -> None:
    saved = sys.modules.get("orjson")
    sys.modules["orjson"] = None  # type: ignore[assignment]  # import orjson now raises ImportError
    try:
        assert _emitted(data) == _stdlib(data)
    finally:
        if saved is None:
            del sys.modules["orjson"]
        else:
            sys.modules["orjson"] = saved


def test_a_tenant_listing_takes_the_fast_path_and_floats_or_other_types_do_not() -> None:
    pytest.importorskip("orjson")
    records = [{"tenant_id": f"t{i}", "uid_base": i, "adopted": False, "capabilities": [{"name": "echo"}],
                "last_error": None} for i in range(3)]  # fmt: skip
    assert output._orjson_dumps({"ok": True, "data": records}) == _stdlib(records).rstrip("\n")
    assert output._orjson_dumps({"a": [{"b": 1e-05}]}) is None
    assert output._orjson_dumps({"a": "é"}) is None and output._orjson_dumps({"a": "\x7f"}) is None
    assert output._orjson_dumps({1: "a"}) is None and output._orjson_dumps({"a": 2**64}) is None
    assert output._orjson_dumps(("a", [1])) is not None and output._orjson_dumps(1.5) is None
