"""A real hive for tests: the daemon as a process on real Unix sockets, real mothers, tmp dirs.

Paths are short (``/tmp/cbXXXX``) because a Unix socket path must fit in 104-108 bytes.
"""

import http.client
import json
import os
import resource
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from colibri.adapters.daemon_client import DaemonClient, UnixHTTPConnection
from colibri.services.tenants import TenantService
from colibri.store.db import Store
from tests.integration.as_host import as_host

REPO = Path(__file__).resolve().parents[2]
MOTHER = REPO / "skills" / "mother" / "mother.py"
ECHO = REPO / "skills" / "mother" / "handlers" / "echo"
# Short intervals, but liveness windows a busy machine cannot miss: a test that expects an agent
# to stay active must not see it stale because the machine paused its mother for a second (they
# did, with three test workers); a test that watches an agent go stale and lost asks for WATCHED.
FAST = {
    "COLIBRI_HEARTBEAT_INTERVAL": "0.2",
    "COLIBRI_AGENT_STALE_AFTER": "30",
    "COLIBRI_AGENT_LOST_AFTER": "60",
    "COLIBRI_TASK_MAX_ATTEMPTS": "3",
    "COLIBRI_RECONCILE_INTERVAL": "0",
    "COLIBRI_DATABASE_TIMEOUT": "0.5",
}
WATCHED = {"COLIBRI_AGENT_STALE_AFTER": "1.0", "COLIBRI_AGENT_LOST_AFTER": "2.0"}
"""The windows of a test that watches liveness happen: stale after 1 s without a heartbeat, lost after 2 s."""
HANDLERS = {
    "hang": "#!/bin/sh\nsleep 60\n",
    "crash": "#!/bin/sh\necho 'handler exploded' >&2\nexit 3\n",
    "slow": "#!/bin/sh\nsleep 4\ncat\n",
}


def wait_until(predicate: Callable[[], Any], timeout: float = 15.0, step: float = 0.05, what: str = "condition") -> Any:
    """Poll until ``predicate()`` is truthy (no timing assertion: only a bound to fail a hung test)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s")
        time.sleep(step)


def listening(path: Path) -> bool:
    """Does a daemon accept on this Unix socket now?  (Its file alone may be a killed daemon's.)"""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(2)
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


def wait_for(what: str, check: Callable[[], Any], timeout: float = 60.0) -> Any:
    """``wait_until`` for the chain tests: ``what`` names the wait in its failure."""
    return wait_until(check, timeout, 0.25, what)


class Raw:
    """Requests on any socket, returning (status, decoded JSON or text)."""

    def __init__(self, path: Path, timeout: float = 10.0) -> None:
        self.conn = UnixHTTPConnection(path, timeout)

    def __call__(self, method: str, url: str, body: Any = None, raw: bytes | None = None) -> tuple[int, Any]:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        try:
            self.conn.request(method, url, body=data)
            response = self.conn.getresponse()
            text = response.read()
        except (OSError, http.client.HTTPException):
            self.conn.close()
            raise
        if response.getheader("Connection", "").lower() == "close":
            self.conn.close()
        try:
            return response.status, json.loads(text) if text else None
        except ValueError:
            return response.status, text.decode()

    def close(self) -> None:
        self.conn.close()


def raw_exchange(path: Path, data: bytes, timeout: float = 5.0) -> bytes:
    """Send bytes as they are and read until the daemon closes the connection."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        sock.sendall(data)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


class Hive:
    """One daemon, its tmp dirs, and the mothers started in it."""

    def __init__(self, extra_env: dict[str, str] | None = None) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="cb", dir="/tmp"))
        (self.root / "colibri.toml").write_text("")
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("COLIBRI_", "BW_", "BITWARDENCLI_"))}
        self.env.update(FAST)
        self.env.update(
            COLIBRI_CONFIG=str(self.root / "colibri.toml"),
            COLIBRI_STATE_DIR=str(self.root / "db"),
            COLIBRI_RUN_DIR=str(self.root / "run"),
            COLIBRI_LOG_DIR=str(self.root / "log"),
            COLIBRI_HOST="testhost",
        )
        self.env.update(extra_env or {})
        self.daemon: subprocess.Popen[bytes] | None = None
        self.mothers: list[subprocess.Popen[bytes]] = []
        self.admin = DaemonClient(self.root / "run" / "admin.sock", timeout=10)

    @property
    def db_path(self) -> Path:
        return self.root / "db" / "colibri.db"

    def colibri(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "colibri", *args], env=self.env, capture_output=True, text=True, check=check,
            timeout=120,
        )  # fmt: skip

    def tenant(self, name: str, status: str = "active") -> None:
        """Register a tenant (the service the CLI uses), then set its status as spawn would."""
        store = Store(f"sqlite:///{self.db_path}")
        try:
            with as_host(self.root / "db"):
                TenantService(store, "testhost").register(name, None, None)
        finally:
            store.close()
        with sqlite3.connect(self.db_path) as conn:
            conn.execute("UPDATE tenants SET status = ? WHERE tenant_id = ?", (status, name))
        conn.close()

    def start(self, nofile: int | None = None) -> None:
        """Start the daemon; ``nofile``: its descriptor limit (soft and hard), to reach it in a test."""

        def limit() -> None:
            if nofile is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        log = (self.root / "daemon.log").open("ab")
        self.daemon = subprocess.Popen(
            [sys.executable, "-m", "colibri", "daemon"], env=self.env, stdout=log, stderr=log, preexec_fn=limit
        )
        log.close()
        wait_until(self._ready, 30)

    def _ready(self) -> bool:
        assert self.daemon is not None
        if self.daemon.poll() is not None:
            raise AssertionError(f"the daemon exited with {self.daemon.returncode}:\n{self.log()}")
        try:
            return self.admin.health()["status"] in ("ok", "degraded")
        except Exception:
            return False

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.daemon is not None
        self.daemon.send_signal(sig)
        code = self.daemon.wait(30)
        self.daemon = None
        return code

    def log(self) -> str:
        path = self.root / "daemon.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def socket(self, tenant: str) -> Path:
        return self.root / "run" / "agents" / tenant / "agent.sock"

    def mother(
        self, tenant: str, agent_id: str, capabilities: tuple[str, ...] = ("echo",), env_mode: int = 0o600,
        socket_path: Path | None = None, args: tuple[str, ...] = (),
    ) -> subprocess.Popen[bytes]:  # fmt: skip
        """Start the real mother.py with an identity file, a .env and handlers in a tmp home."""
        home = self.root / "jail" / tenant / agent_id
        handlers = home / "handlers"
        handlers.mkdir(parents=True, exist_ok=True)
        shutil.copy(ECHO, handlers / "echo")
        for name, script in HANDLERS.items():
            (handlers / name).write_text(script)
            (handlers / name).chmod(0o755)
        env_file = home / ".env"
        env_file.write_text("PROVIDER_KEY=not-a-real-key\n")
        env_file.chmod(env_mode)
        identity = {
            "tenant": tenant,
            "agent_id": agent_id,
            "capabilities": [{"name": c, "version": "1"} for c in capabilities],
            "socket": str(socket_path or self.socket(tenant)),
            "env_file": str(env_file),
            "handlers_dir": str(handlers),
            "mother_version": "1",
        }
        (home / "agent.json").write_text(json.dumps(identity))
        log = (home / "mother.log").open("ab")
        proc = subprocess.Popen(
            [sys.executable, str(MOTHER), "--identity", str(home / "agent.json"), "--poll-wait", "2", *args],
            stdout=log, stderr=log, env={"PATH": os.environ["PATH"], "HOME": str(home)},
        )  # fmt: skip
        log.close()
        self.mothers.append(proc)
        return proc

    def mother_log(self, tenant: str, agent_id: str) -> str:
        return (self.root / "jail" / tenant / agent_id / "mother.log").read_text(errors="replace")

    def agent_state(self, key: str) -> str | None:
        for agent in self.admin.agents():
            if agent["key"] == key:
                return str(agent["state"])
        return None

    def close(self) -> None:
        for proc in self.mothers:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)
        if self.daemon is not None and self.daemon.poll() is None:
            self.daemon.kill()
            self.daemon.wait(10)
        shutil.rmtree(self.root, ignore_errors=True)
