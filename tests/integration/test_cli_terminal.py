"""What a tenant sets reaches the operator's terminal only as visible escapes: a real daemon, an
agent registered on its tenant's real socket with hostile strings, the real `colibri` CLI."""

import json
import unicodedata
from collections.abc import Iterator

import pytest

from tests.integration.hive_harness import Hive, Raw

pytestmark = pytest.mark.integration

TITLE = "\x1b]0;owned\x07"  # OSC: retitle the operator's terminal
VERSION = TITLE + "\x9b2J\u202e1.0"  # + C1 CSI "clear screen" + a bidi override (<= 32 chars)
ERROR = "\x1b[2J\x1b[Hcolibri: all good\r\n\u2066\x85" + "\x1b]8;;http://evil/\x07link\x1b]8;;\x07"


def _terminal_safe(text: str) -> bool:
    return all(ch == "\n" or unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Zl", "Zp") for ch in text)


@pytest.fixture(name="hive")
def hive_fixture() -> Iterator[Hive]:
    hive = Hive()
    hive.tenant("demo")
    hive.start()
    try:
        yield hive
    finally:
        hive.close()


def test_hostile_agent_strings_are_escaped_on_the_terminal_and_exact_in_json(hive: Hive) -> None:
    agent = Raw(hive.socket("demo"))
    try:
        registration = {"agent_id": "x", "capabilities": [{"name": "echo"}], "mother_version": VERSION}
        status, body = agent("POST", "/v1/agent/register", registration)
        assert status == 200, body
        task = hive.admin.submit("echo", {"q": 1}, tenant="demo")
        status, claimed = agent("POST", "/v1/tasks/claim", {"agent_id": "x", "wait": 5})
        assert status == 200, claimed
        status, body = agent(
            "POST",
            f"/v1/tasks/{task['id']}/result",
            {"agent_id": "x", "lease": claimed["lease"], "ok": False, "error": ERROR, "result": {TITLE: [ERROR]}},
        )
        assert status == 200, body
    finally:
        agent.close()

    for argv in (("agents",), ("tasks",), ("task", str(task["id"]))):
        run = hive.colibri(*argv)
        assert _terminal_safe(run.stdout) and _terminal_safe(run.stderr), (argv, run.stdout)
    shown = hive.colibri("agents").stdout
    assert "\\x1b]0;owned\\x07\\x9b2J\\u202e1.0" in shown
    shown = hive.colibri("task", str(task["id"])).stdout
    assert "\\x1b[2J\\x1b[Hcolibri: all good\\r\\n\\u2066\\x85" in shown and "\\x1b]8;;http://evil/\\x07" in shown

    agents = json.loads(hive.colibri("agents", "--json").stdout)["data"]
    assert agents[0]["mother_version"] == VERSION
    raw = hive.colibri("task", str(task["id"]), "--json").stdout
    assert raw.isascii() and _terminal_safe(raw)
    assert json.loads(raw)["data"]["error"] == ERROR
