"""Running the real ``bw`` CLI (pinned in tests/tools/package.json) against the test server.

Every call gets its own clean environment: its appdata dir, ``BW_NOINTERACTION=true`` (else a
stale session prompts, and with no TTY exits 0 with empty stdout), and the server's certificate
via ``NODE_EXTRA_CA_CERTS`` (release builds of bw refuse http://, even on loopback). Secrets go
through the environment, never argv, which every local user can read in ``ps``.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .server import VaultwardenServer
from .store import User

REPO_ROOT = Path(__file__).resolve().parents[3]
BW_BIN = REPO_ROOT / "tests" / "tools" / "node_modules" / ".bin" / "bw"
INSTALL_HINT = "bash tests/setup.sh  (or: cd tests/tools && npm ci)"
# Inherited so node starts normally; everything else (BW_SESSION, NODE_OPTIONS, ...) is dropped.
_PASSTHROUGH = ("PATH", "LANG", "LC_ALL", "TZ", "TMPDIR")


def find_bw() -> Path | None:
    return BW_BIN if os.access(BW_BIN, os.X_OK) else None


@dataclass(frozen=True)
class BwResult:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    def __str__(self) -> str:
        return (
            f"bw {' '.join(self.args)} -> rc {self.returncode} in {self.seconds:.1f}s\n"
            f"--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"
        )

    def ok(self) -> BwResult:
        """Assert success, showing the whole exchange when it failed."""
        assert self.returncode == 0, str(self)
        return self

    def json(self) -> Any:
        return json.loads(self.ok().stdout)


class BwCli:
    """One bw appdata dir (one logged-in account) bound to one server."""

    def __init__(self, server: VaultwardenServer, appdata: Path, binary: Path = BW_BIN) -> None:
        self.server = server
        self.appdata = appdata
        self.binary = binary
        self.session: str | None = None
        self.history: list[BwResult] = []

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        env = {k: os.environ[k] for k in _PASSTHROUGH if k in os.environ}
        env.update(
            HOME=str(self.appdata),
            BITWARDENCLI_APPDATA_DIR=str(self.appdata),
            BW_NOINTERACTION="true",
            NODE_EXTRA_CA_CERTS=str(self.server.ca_cert_path),
        )
        if self.session:
            env["BW_SESSION"] = self.session
        env.update(extra or {})
        return env

    def run(self, *args: str, env: Mapping[str, str] | None = None, timeout: float = 90) -> BwResult:
        started = time.monotonic()
        proc = subprocess.run(
            [str(self.binary), *args],
            env=self.env(env),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        result = BwResult(args, proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started)
        self.history.append(result)
        return result

    def configure(self) -> BwResult:
        return self.run("config", "server", self.server.url)

    def login_apikey(self, user: User, client_secret: str | None = None) -> BwResult:
        secret = user.client_secret if client_secret is None else client_secret
        return self.run("login", "--apikey", env={"BW_CLIENTID": user.client_id, "BW_CLIENTSECRET": secret})

    def login_password(self, user: User, password: str | None = None) -> BwResult:
        """``bw login EMAIL --passwordenv --raw``; keeps the session key it prints."""
        pw = user.password if password is None else password
        result = self.run(
            "login",
            user.email,
            "--passwordenv",
            "BW_MASTER_PASSWORD",
            "--raw",
            env={"BW_MASTER_PASSWORD": pw},
        )
        self._keep_session(result)
        return result

    def unlock(self, password: str) -> BwResult:
        """``bw unlock --passwordenv --raw``; keeps the session key it prints."""
        result = self.run(
            "unlock", "--passwordenv", "BW_MASTER_PASSWORD", "--raw", env={"BW_MASTER_PASSWORD": password}
        )
        self._keep_session(result)
        return result

    def _keep_session(self, result: BwResult) -> None:
        # Each successful unlock/login makes every earlier session key for this appdata dir stale.
        if result.returncode == 0 and result.stdout.strip():
            self.session = result.stdout.strip()
