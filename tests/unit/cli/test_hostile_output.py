"""Tenant-controlled strings reach the operator's terminal through the real CLI renderer with
every control and format character shown as a visible escape; --json stays valid, ASCII JSON."""

import json
import unicodedata
from typing import Any

import pytest

from colibri.cli import context
from colibri.errors import DaemonError
from tests.conftest import Invoke

HOSTILE = [
    "\x1b]0;pwned\x07",  # OSC: set the terminal's title
    "\x1b[2J\x1b[H",  # clear the screen
    "\x9b31m",  # C1 CSI
    "\x85next line",  # C1 NEL
    "a\x7fb",  # DEL
    "\u202eevil\u202c",  # bidi override
    "\u2066iso\u2069",  # bidi isolate
    "zero\u200bwidth\ufeff",  # format characters
    "two\nlines\rback\tand\x00nul",
    "\ud800lone",  # a lone surrogate (from a non-UTF-8 argv or file)
]
EVIL = "".join(HOSTILE)


def _terminal_safe(text: str) -> bool:
    return all(ch == "\n" or unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Zl", "Zp") for ch in text)


class FakeDaemon:
    """The daemon client seam: answers with what a hostile tenant could have set."""

    def agents(self, tenant: str | None = None, state: str | None = None) -> list[dict[str, Any]]:
        return [
            {
                "key": f"acme/{EVIL}",
                "state": "active",
                "capabilities": [{"name": EVIL}],
                "mother_version": EVIL,
                "last_seen_at": "2026-12-01T08:00:00Z",
            }
        ]

    def _task(self) -> dict[str, Any]:
        return {
            "id": 7, "tenant": "acme", "capability": EVIL, "state": "failed", "attempts": 1, "max_attempts": 3,
            "agent": EVIL, "waiting": None, "payload": {"k": EVIL}, "result": {EVIL: [EVIL]}, "error": EVIL,
            "exit_status": 1, "submitted_by": "admin", "created_at": "t", "claimed_at": "t", "finished_at": "t",
            "updated_at": "t",
        }  # fmt: skip

    def tasks(self, tenant: str | None = None, state: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        return [self._task()]

    def task(self, task_id: int, wait: float = 0) -> dict[str, Any]:
        if task_id == 8:
            raise DaemonError(f"the daemon refused: {EVIL}")
        return self._task()


@pytest.fixture(autouse=True)
def fake_daemon(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(context.Context, "daemon_client", lambda self: FakeDaemon())


@pytest.mark.parametrize("argv", [("agents",), ("tasks",), ("task", "7"), ("task", "8")])
def test_human_output_escapes_every_control_character(invoke: Invoke, argv: tuple[str, ...]) -> None:
    code, out, err = invoke(*argv)
    assert code == (16 if argv == ("task", "8") else 0), err
    for text in (out, err):
        assert _terminal_safe(text), repr(text)
    shown = out + err
    assert "\\x1b]0;pwned\\x07" in shown and "\\u202eevil\\u202c" in shown and "\\x9b31m" in shown
    assert "\\ud800lone" in shown and "two\\nlines\\rback\\tand\\x00nul" in shown
    if argv == ("task", "8"):
        assert err.startswith("colibri: the daemon refused: ") and err.count("\n") == 1


@pytest.mark.parametrize("argv", [("agents",), ("tasks",), ("task", "7"), ("task", "8")])
def test_json_output_is_ascii_and_gives_back_the_exact_strings(invoke: Invoke, argv: tuple[str, ...]) -> None:
    code, out, err = invoke(*argv, "--json")
    assert err == ""
    assert out.isascii() and _terminal_safe(out)
    doc = json.loads(out)
    if argv == ("task", "8"):
        assert code == 16 and doc["error"]["message"] == f"the daemon refused: {EVIL}"
    elif argv == ("agents",):
        assert doc["data"][0]["mother_version"] == EVIL
    else:
        record = doc["data"][0] if argv == ("tasks",) else doc["data"]
        assert record["capability"] == EVIL and (argv == ("tasks",) or record["result"] == {EVIL: [EVIL]})
