"""colibri/strictjson.py: the one strict JSON parser (API bodies, --payload)."""

import gc
import json

import pytest

from colibri import strictjson
from colibri.cli.params import json_document
from colibri.daemon.http import BadRequest, parse_json
from colibri.errors import InvalidInput


def _nested(levels: int) -> object:
    value: object = []
    for _ in range(levels - 1):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("text", "value"),
    [("{}", {}), ('{"a": [1, 2.5, "x", null, true]}', {"a": [1, 2.5, "x", None, True]}), ('"\\u00e9"', "é"),
     (str(2**63 - 1), 2**63 - 1), ("[" * 64 + "]" * 64, _nested(64))],
)  # fmt: skip
def test_strict_json_is_read(text: str, value: object) -> None:
    assert strictjson.loads(text) == value
    assert strictjson.loads(text.encode()) == value


@pytest.mark.parametrize(
    ("data", "why"),
    [
        ("NaN", "NaN is not JSON"),
        ('{"a": -Infinity}', "-Infinity is not JSON"),
        ("1e400", "1e400 is not a finite number"),  # float("1e400") is inf: the daemon stored "Infinity"
        (str(2**70), "beyond 64 bits"),
        (str(-(2**63)), "beyond 64 bits"),
        ("[" * 65 + "]" * 65, "nested too deeply (65 levels"),
        ("[" * 100_000, "nested too deeply"),
        ('"\\ud800"', "lone surrogate"),
        ('{"\\udfff": 1}', "lone surrogate"),
        ('"\ud800"', "not valid UTF-8"),
        (b'"\xff"', "not valid UTF-8"),
        (b'"\xed\xa0\x80"', "not valid UTF-8"),  # a surrogate encoded as UTF-8 bytes
        ("{", "Expecting property name"),
    ],
)
def test_what_is_not_strict_json_is_refused(data: str | bytes, why: str) -> None:
    with pytest.raises(strictjson.NotStrictJson, match=why.replace("(", r"\(").replace("[", r"\[")):
        strictjson.loads(data)


def test_the_daemon_and_the_cli_refuse_alike() -> None:
    """One parser, two mappings: a 400 on the API, exit 7 on the command line (before, the
    daemon took 1e400 as infinity and the CLI took 2**70)."""
    for text in ("1e400", str(2**70), "[" * 65 + "]" * 65, '"\\ud800"', "NaN"):
        with pytest.raises(BadRequest) as bad:
            parse_json(text.encode())
        assert bad.value.status == 400 and str(bad.value).startswith("the body is not valid JSON: ")
        with pytest.raises(InvalidInput, match=r"^--payload is not valid JSON: "):
            json_document("--payload", text)


def _reference_depth(text: str) -> int:
    """The per-character scan strictjson.depth replaced (slow, obviously right)."""
    level = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            level += 1
            deepest = max(deepest, level)
        elif char in "]}":
            level -= 1
    return deepest


@pytest.mark.parametrize(
    "text",
    [
        "[]", "{}", '{"a": [1, {"b": []}]}', "[[],[[]],[[[]]]]", "{[]}", "[{}]", '["[[[", "]]]"]',
        '{"k\\"[": ["\\\\", [["x"]]]}', '["é[", {"ü": [[]]}]', "[" * 70 + "]" * 70,
        "[" + ",".join(["[" * 5 + "]" * 5] * 100) + "]", json.dumps([{"a": [[{"b": "]]]"}]]}] * 30),
    ],
)  # fmt: skip
def test_depth_matches_a_per_character_scan(text: str) -> None:
    assert strictjson.depth(text) == _reference_depth(text)
    assert strictjson.depth(text, 3) == min(_reference_depth(text), 4)


def test_depth_of_unbalanced_text_is_an_upper_bound() -> None:
    assert strictjson.depth("[" * 100_000) >= 100_000
    assert strictjson.depth("[[[]", 64) >= 3


def test_a_big_document_is_decoded_without_a_garbage_collection() -> None:
    """A body of 300,000 empty lists ran about 400 collections while it was built (in the daemon,
    full ones over its whole heap among them: admin /health waited 0.8 s idle, 4.8 s on a busy
    host); a decoded document holds no cycle, so the collector is paused for the decode."""
    runs: list[int] = []

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            runs.append(info["generation"])

    body = '{"payload":[' + "[]," * 300_000 + "[]]}"
    gc.callbacks.append(count)
    try:
        value = strictjson.loads(body)
        stored = strictjson.load_checked(body)  # a stored payload, decoded for each claim and look
    finally:
        gc.callbacks.remove(count)
    assert len(value["payload"]) == len(stored["payload"]) == 300_001
    assert runs == []
    assert gc.isenabled()  # and the collector runs again after


def test_the_collector_is_running_again_after_a_refused_document() -> None:
    with pytest.raises(strictjson.NotStrictJson):
        strictjson.loads('{"a": [' + "1," * 1000 + "1e400]}")
    assert gc.isenabled()
