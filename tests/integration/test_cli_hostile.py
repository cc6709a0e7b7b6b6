"""No traceback, ever: hostile arguments, stdin, config files and environment through the real
``colibri`` script (``main()``, a fresh process each), each answered with one line on stderr (or
the JSON error envelope) and the exit code README documents for it."""

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from colibri.errors import EXIT_CODES
from tests.conftest import REPO

pytestmark = pytest.mark.integration

SCRIPT = Path(sys.executable).parent / "colibri"


@dataclass(frozen=True)
class Case:
    name: str
    argv: tuple[str | bytes, ...]
    code: int
    needle: str = ""
    env: Mapping[str, str | bytes] = field(default_factory=dict)
    stdin: bytes = b""
    config: bytes | None = None  # the config file's bytes (None: the empty default one)


DEEP = "[" * 100_000
ROOTS = "COLIBRI_SECRETS_ALLOWED_ROOTS"
LIST = ("list-tenants",)
CASES = [
    # --- submit-task --payload: JSON from the command line
    Case("payload 100,000 [", ("submit-task", "echo", "--payload", DEEP), 7, "nested too deeply"),
    Case("payload 20,000 {", ("submit-task", "echo", "--payload", '{"a":' * 20_000), 7, "nested too deeply"),
    Case("payload NaN", ("submit-task", "echo", "--payload", "NaN"), 7, "NaN"),
    Case("payload Infinity", ("submit-task", "echo", "--payload", '{"x": [1, -Infinity]}'), 7, "Infinity"),
    Case("payload 1e400", ("submit-task", "echo", "--payload", "[1e400]"), 7, "finite"),
    Case("payload not UTF-8", ("submit-task", "echo", "--payload", b'"\xff\xfe"'), 7, "UTF-8"),
    Case("payload lone surrogate", ("submit-task", "echo", "--payload", '"\\ud800"'), 7, "surrogate"),
    Case("payload 5,000 digits", ("submit-task", "echo", "--payload", "9" * 5000), 7, "not valid JSON"),
    Case("payload NUL escape", ("submit-task", "echo", "--payload", '"a\\u0000b"'), 16, "daemon"),
    Case("payload 2**70", ("submit-task", "echo", "--payload", str(2**70)), 7, "beyond 64 bits"),
    Case("payload empty", ("submit-task", "echo", "--payload", ""), 7, "not valid JSON"),
    Case("payload --json NaN", ("submit-task", "echo", "--payload", "NaN", "--json"), 7, "NaN"),
    # --- numbers on the command line
    Case("tasks --limit 0", ("tasks", "--limit", "0"), 2, "--limit"),
    Case("tasks --limit 2**70", ("tasks", "--limit", str(2**70)), 2, "--limit"),
    Case("task id 2**70", ("task", str(2**70)), 2, "task_id"),
    Case("task id -1", ("task", "-1"), 2, ""),
    # --- huge or hostile arguments
    Case("tenant id 100,000 chars", ("show-tenant", "a" * 100_000), 4, "more characters)"),
    Case("tenant id with escapes", ("show-tenant", "\x1b]0;x\x07"), 4, "\\x1b]0;x\\x07"),
    Case("register 100,000 chars", ("register-tenant", "a" * 100_000), 7, "longer than 32 characters"),
    Case("tenant id not UTF-8", ("register-tenant", b"ac\xffme"), 7, "invalid tenant id"),
    Case("--config 5,000 chars", ("--config", "/" + "x" * 5000, "list-tenants"), 3, "config file"),
    Case("--config a directory", ("--config", "/", "list-tenants"), 3, "config file"),
    Case("provision ''", ("provision", ""), 7, "empty"),  # it provisioned every tenant
    Case("spawn-agent ''", ("spawn-agent", ""), 4, "tenant not found"),
    Case("destroy-agent ''", ("destroy-agent", "", "--yes"), 4, "tenant not found"),
    Case("spawn-local --home ''", ("spawn-local", "t", "--home", ""), 4, "tenant not found"),
    # --- vault login --stdin
    Case("stdin NUL", ("vault", "login", "--stdin"), 7, "NUL", stdin=b"user.x\0y\nsecret\npassword\n"),
    Case("stdin ESC", ("vault", "login", "--stdin"), 7, "control", stdin=b"user.x\nsec\x1bret\npassword\n"),
    Case("stdin not UTF-8", ("vault", "login", "--stdin"), 7, "UTF-8", stdin=b"user.x\nsecret\npass\xffword\n"),
    Case("stdin 10 MB", ("vault", "login", "--stdin"), 7, "bytes", stdin=b"x" * 10_000_000),
    Case("stdin CRLF lines", ("vault", "login", "--stdin"), 7, "control", stdin=b"user.x\r\nsecret\r\npw\r\n"),
    # --- the config file
    Case("config not UTF-8", ("list-tenants",), 3, "UTF-8", config=b'host = "\xff"\n'),
    Case("config 100,000 [", ("list-tenants",), 3, "config file", config=b"x = " + b"[" * 100_000),
    Case("config garbage:// url", ("list-tenants",), 3, "database_url", config=b'database_url = "garbage://"\n'),
    Case("config NUL in a path", ("list-tenants",), 3, "skills_dir", config=b'skills_dir = "/tmp/a\\u0000b"\n'),
    Case("config relative path", ("list-tenants",), 3, "not an absolute path", config=b'skills_dir = "skills"\n'),
    Case("config nan timeout", ("list-tenants",), 3, "database_timeout", config=b"database_timeout = nan\n"),
    Case("config inf timeout", ("list-tenants",), 3, "database_timeout", config=b"database_timeout = inf\n"),
    Case("config huge attempts", ("list-tenants",), 3, "task_max_attempts", config=b"task_max_attempts = 1" + b"0" * 9),
    Case("config empty jail_user", ("list-tenants",), 3, "jail_user", config=b'jail_user = ""\n'),
    # --- settings from the environment
    Case("mysql://x", ("list-tenants",), 3, "mysql", env={"COLIBRI_DATABASE_URL": "mysql://x"}),
    Case("postgresql+nodriver", ("list-tenants",), 3, "database_url", env={"COLIBRI_DATABASE_URL": "postgresql+nodriver://x/y"}),
    Case("not a URL", ("list-tenants",), 3, "database_url", env={"COLIBRI_DATABASE_URL": "not a url"}),
    Case("empty state dir", ("list-tenants",), 3, "state_dir", env={"COLIBRI_STATE_DIR": ""}),
    Case("empty run dir", ("agents",), 3, "run_dir", env={"COLIBRI_RUN_DIR": ""}),
    Case("empty log dir", ("list-tenants",), 3, "log_dir", env={"COLIBRI_LOG_DIR": ""}),
    Case("empty sandbox dir", ("list-tenants",), 3, "sandbox_dir", env={"COLIBRI_SANDBOX_DIR": ""}),
    Case("empty staged dir", ("list-tenants",), 3, "staged_secrets_dir", env={"COLIBRI_STAGED_SECRETS_DIR": ""}),
    Case("empty creds dir", ("vault", "status"), 3, "vault_credentials_dir", env={"COLIBRI_VAULT_CREDENTIALS_DIR": ""}),
    Case("empty allowed root", LIST, 3, "secrets_allowed_roots", env={ROOTS: '[""]'}),
    Case("allowed roots not JSON", LIST, 3, "secrets_allowed_roots", env={ROOTS: "/a,/b"}),
    Case("allowed roots 100,000 [", LIST, 3, "secrets_allowed_roots", env={ROOTS: DEEP}),
    Case("newline in state dir", ("list-tenants",), 3, "state_dir", env={"COLIBRI_STATE_DIR": "/tmp/a\nb"}),
    Case("ESC in host", ("list-tenants",), 3, "host", env={"COLIBRI_HOST": "h\x1b[2Jost"}),
    Case("not UTF-8 in host", ("list-tenants",), 3, "host", env={"COLIBRI_HOST": b"h\xffost"}),
    Case("timeout nan", ("list-tenants",), 3, "database_timeout", env={"COLIBRI_DATABASE_TIMEOUT": "nan"}),
    Case("timeout 1e400", ("list-tenants",), 3, "database_timeout", env={"COLIBRI_DATABASE_TIMEOUT": "1e400"}),
    Case("parallelism 2**70", ("list-tenants",), 3, "spawn_parallelism", env={"COLIBRI_SPAWN_PARALLELISM": str(2**70)}),
    Case("vault_url not a URL", ("vault", "status"), 3, "vault_url", env={"COLIBRI_VAULT_URL": "garbage"}),
    Case("ASCII stdout", ("config", "show"), 0, "h\\xfc", env={"PYTHONIOENCODING": "ascii", "COLIBRI_HOST": "h\xfc"}),
    Case("COLIBRI_CONFIG empty", LIST, 3, "COLIBRI_CONFIG is empty", env={"COLIBRI_CONFIG": ""}),
    Case("host 100,000 chars", LIST, 3, "at most 4096", env={"COLIBRI_HOST": "h" * 100_000}),
    Case("COLIBRI_CONFIG 5,000 chars", ("list-tenants",), 3, "config file", env={"COLIBRI_CONFIG": "/" + "y" * 5000}),
]  # fmt: skip


def _run(case: Case, tmp_path: Path) -> subprocess.CompletedProcess[bytes]:
    base = tmp_path / case.name.replace(" ", "_").replace("/", "_")
    base.mkdir()
    config = base / "colibri.toml"
    config.write_bytes(case.config or b"")
    env: dict[str | bytes, str | bytes] = {
        k: v for k, v in os.environ.items() if not k.startswith(("COLIBRI_", "BW_", "BITWARDENCLI_"))
    }
    env |= {
        "COLIBRI_CONFIG": str(config),
        "COLIBRI_STATE_DIR": str(base / "db"),
        "COLIBRI_RUN_DIR": str(base / "run"),
        "COLIBRI_LOG_DIR": str(base / "log"),
        "COLIBRI_HOST": "testhost",
    }
    env |= dict(case.env)
    bytes_env = {os.fsencode(k): os.fsencode(v) for k, v in env.items()}
    argv = [os.fsencode(SCRIPT), *(os.fsencode(a) for a in case.argv)]
    return subprocess.run(argv, env=bytes_env, input=case.stdin, capture_output=True, timeout=60, cwd=REPO)


@pytest.fixture(name="results", scope="module")
def results_fixture(tmp_path_factory: pytest.TempPathFactory) -> dict[str, subprocess.CompletedProcess[bytes]]:
    assert SCRIPT.exists(), f"the colibri script is missing: {SCRIPT}"
    tmp = tmp_path_factory.mktemp("hostile")
    with ThreadPoolExecutor(max_workers=4) as pool:
        done = pool.map(lambda c: (c.name, _run(c, tmp)), CASES)
        return dict(done)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_one_line_and_a_documented_code(results: dict[str, subprocess.CompletedProcess[bytes]], case: Case) -> None:
    proc = results[case.name]
    out, err = proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace")
    shown = f"rc {proc.returncode}\n--- stdout\n{out[:2000]}\n--- stderr\n{err[:2000]}"
    assert "Traceback" not in out + err, shown
    assert proc.returncode in EXIT_CODES, shown
    assert proc.returncode == case.code, shown
    assert len(err) < 1000 and (case.code == 0 or len(out) < 2000), shown  # a huge argument is not echoed
    if "--json" in case.argv:
        assert err == "", shown
        doc = json.loads(out)
        assert doc["ok"] is False and doc["error"]["code"] == case.code and case.needle in doc["error"]["message"]
        return
    if case.code == 0:  # not an error: shown as well as the terminal can
        assert err == "" and case.needle in out, shown
        return
    if case.code == 2:  # typer's usage error: its own few lines, no traceback
        assert case.needle in err, shown
        return
    assert out == "", shown
    assert err.startswith("colibri: ") and err.endswith("\n") and err.count("\n") == 1, shown
    assert all(c.isprintable() for c in err[:-1]), shown  # no control character reaches the terminal
    assert case.needle in err, shown
