"""The mother and a tenant without secrets (issue 9): the identity says whether a .env is
expected; without one expected the mother runs, with one expected and missing it still refuses.
The real mother.py runs as a process up to its ready line (no daemon: it then retries register)."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

MOTHER = Path(__file__).resolve().parents[2] / "skills" / "mother" / "mother.py"


def identity(tmp_path: Path, **extra: object) -> Path:
    document = {
        "tenant": "plain",
        "agent_id": "plain-1",
        "capabilities": [],
        "socket": str(tmp_path / "no-daemon.sock"),
        "env_file": str(tmp_path / ".env"),
        "handlers_dir": str(tmp_path),
        **extra,
    }
    path = tmp_path / "agent.json"
    path.write_text(json.dumps(document))
    return path


def run_mother(path: Path, seconds: float = 1.5) -> tuple[int | None, str]:
    """The mother's exit status (None: still running after ``seconds``, then stopped) and its log."""
    proc = subprocess.Popen([sys.executable, str(MOTHER), "--identity", str(path)], stderr=subprocess.PIPE, text=True)
    try:
        code = proc.wait(seconds)
    except subprocess.TimeoutExpired:
        code = None
        proc.terminate()
    _, err = proc.communicate(timeout=10)
    return code, err


def test_no_secrets_expected_runs_without_a_env(tmp_path: Path) -> None:
    code, log = run_mother(identity(tmp_path, secrets_expected=False))
    assert code is None, log  # up: past its checks, trying to register
    assert "no secrets expected for tenant plain and no" in log
    assert "ready: identity read and .env checked" in log


@pytest.mark.parametrize("extra", [{"secrets_expected": True}, {}], ids=["expected", "identity-without-the-key"])
def test_secrets_expected_and_missing_still_refuses(tmp_path: Path, extra: dict[str, object]) -> None:
    code, log = run_mother(identity(tmp_path, **extra))
    assert code == 6, log
    assert "refusing to start: the secrets file" in log and "is missing" in log


def test_a_env_there_is_checked_even_when_none_is_expected(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("K='v'\n")
    env.chmod(0o644)
    code, log = run_mother(identity(tmp_path, secrets_expected=False))
    assert code == 6 and "has mode 0644; it must be 0600" in log


def test_secrets_expected_must_be_a_boolean(tmp_path: Path) -> None:
    started = time.monotonic()
    code, log = run_mother(identity(tmp_path, secrets_expected="no"))
    assert code == 3 and "'secrets_expected' must be true or false" in log
    assert time.monotonic() - started < 5
    assert os.path.exists(tmp_path / "agent.json")
