"""The mother's checks, without a daemon: identity, the .env rule, handler outcomes."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

MOTHER = Path(__file__).resolve().parents[3] / "skills" / "mother" / "mother.py"
ECHO = MOTHER.parent / "handlers" / "echo"


@pytest.fixture(name="mother", scope="module")
def mother_fixture() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mother", MOTHER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_env_must_be_0600_and_ours(mother: ModuleType, tmp_path: Path) -> None:
    env = tmp_path / ".env"
    with pytest.raises(mother.Refused, match="is missing"):
        mother.check_secrets(str(env))
    env.write_text("K=v\n")
    env.chmod(0o640)
    with pytest.raises(mother.Refused, match="mode 0640; it must be 0600") as caught:
        mother.check_secrets(str(env))
    assert caught.value.code == 6
    env.chmod(0o600)
    mother.check_secrets(str(env))
    link = tmp_path / "link.env"
    link.symlink_to(env)
    with pytest.raises(mother.Refused, match="not a regular file"):
        mother.check_secrets(str(link))
    if os.geteuid() == 0:
        os.chown(env, 4242, -1)
        with pytest.raises(mother.Refused, match="owned by uid 4242"):
            mother.check_secrets(str(env))


def test_identity_file_is_checked(mother: ModuleType, tmp_path: Path) -> None:
    path = tmp_path / "agent.json"
    with pytest.raises(mother.Refused, match="not found") as caught:
        mother.load_identity(str(path))
    assert caught.value.code == 3
    path.write_text(json.dumps({"tenant": "demo"}))
    with pytest.raises(mother.Refused, match="'agent_id' is missing"):
        mother.load_identity(str(path))


def test_handler_outcomes(mother: ModuleType) -> None:
    assert mother.Mother.outcome(0, b'{"a": 1}', b"") == {"ok": True, "result": {"a": 1}, "exit_status": 0}
    assert mother.Mother.outcome(0, b"plain", b"")["result"] == {"stdout": "plain"}
    failed = mother.Mother.outcome(2, b"", b"boom\n")
    assert failed["ok"] is False and failed["error"] == "handler exited with status 2: boom"
    assert "killed by signal 9" in mother.Mother.outcome(-9, b"", b"")["error"]


def test_echo_handler_round_trips_the_payload() -> None:
    payload = {"text": "héllo", "n": [1, 2.5, None]}
    done = subprocess.run([str(ECHO)], input=json.dumps(payload), capture_output=True, text=True, check=True)
    assert json.loads(done.stdout) == payload


def test_refuses_to_start_and_says_why(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("K=v\n")
    env.chmod(0o666)
    identity = {"tenant": "t", "agent_id": "a", "socket": "/nonexistent.sock", "env_file": str(env),
                "handlers_dir": str(tmp_path), "capabilities": []}  # fmt: skip
    (tmp_path / "agent.json").write_text(json.dumps(identity))
    done = subprocess.run(
        [sys.executable, str(MOTHER)],
        env={"PATH": os.environ["PATH"], "COLIBRI_AGENT_IDENTITY": str(tmp_path / "agent.json")},
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 6
    assert f"refusing to start: {env} has mode 0666; it must be 0600" in done.stderr


def test_a_refusal_for_now_is_busy_and_a_report_retries_it(mother: ModuleType, tmp_path: Path) -> None:
    """A 429 (a limit of the tenant's) or 503 must be retried, not taken for a final 409 and dropped."""
    import socket
    import threading

    path = tmp_path / "s"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(4)
    busy = json.dumps({"error": {"type": "LimitExceeded", "code": 16, "message": "slow down"}}).encode()
    done = json.dumps({"id": 1, "state": "succeeded"}).encode()
    bodies: list[bytes] = []

    def run() -> None:
        with listener:
            for status, body in ((429, busy), (200, done)):
                conn, _ = listener.accept()
                with conn:
                    data = conn.recv(65536)
                    head, _, body_in = data.partition(b"\r\n\r\n")
                    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                    while len(body_in) < length:
                        body_in += conn.recv(65536)
                    bodies.append(body_in)
                    conn.sendall(b"HTTP/1.1 %d X\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                                 % (status, len(body), body))  # fmt: skip

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    identity = {"tenant": "t", "agent_id": "a", "socket": str(path), "env_file": "/x", "handlers_dir": "/x"}
    agent = mother.Mother(identity)
    agent.report({"id": 1, "capability": "echo", "lease": "L", "lease_seconds": 10}, {"ok": True})
    thread.join(5)
    assert len(bodies) == 2 and bodies[0] == bodies[1] and b'"lease": "L"' in bodies[1]  # the same report again
    assert issubclass(mother.Busy, mother.Unreachable)


@pytest.mark.parametrize(
    "flag, value",
    [
        ("--poll-wait", "31"),
        ("--poll-wait", "0"),
        ("--poll-wait", "nan"),
        ("--handler-timeout", "-1"),
        ("--handler-timeout", "inf"),
    ],
)
def test_out_of_range_seconds_are_refused_not_sent(flag: str, value: str) -> None:
    """The daemon answers a claim wait over 30 s with 400 (it once clamped it): the mother refuses
    such a flag at start, with exit 2 and one line, instead of failing every poll."""
    run = subprocess.run([sys.executable, str(MOTHER), flag, value], capture_output=True, text=True, timeout=30)
    assert run.returncode == 2, run
    assert f"argument {flag}: " in run.stderr and "seconds" in run.stderr
