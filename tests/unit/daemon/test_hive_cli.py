"""The hive commands without a daemon: clear errors and exit codes (16 unreachable, 7 bad input)."""

import json

import pytest

from colibri.cli.app import run


def test_commands_say_the_daemon_is_not_running(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["tasks"]) == 16
    assert "colibri: the colibri daemon is not running (no socket at " in capsys.readouterr().err
    assert run(["agents", "--json"]) == 16
    error = json.loads(capsys.readouterr().out)["error"]
    assert error["type"] == "DaemonError" and error["code"] == 16
    assert run(["daemon", "status"]) == 16


def test_submit_task_refuses_bad_json_before_calling_the_daemon(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["submit-task", "echo", "--payload", "{nope"]) == 7
    assert "--payload is not valid JSON" in capsys.readouterr().err
