"""The world of the vault-provision tests (test_provision*.py): the REAL bw CLI (pinned 2026.9.0)
against the Vaultwarden-compatible server, colibri as a process, a tenant's fake jail root.

Each bw process costs about 3 s, so each test file builds one world for its tests (module
scope): one server, one bw data directory and one logged-in operator (``vault login`` runs once,
against a server WITHOUT the user-key-id route, which proves the retry of bw's first unlock).
The tests are in three files so that pytest-xdist (``--dist loadfile``) runs them on both
workers: each file is a few bw sessions, not all of them (docs/PERFORMANCE.md).
"""

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest
from dotenv import dotenv_values

from colibri.services.tenants import TenantService
from colibri.store.db import Store
from colibri.store.models import Tenant
from tests.conftest import REPO, require
from tests.integration.as_host import as_host
from tests.servers.vaultwarden import Collection, Item, VaultwardenServer, start
from tests.servers.vaultwarden.bwcli import find_bw

NODE_DOTENV = REPO / "tests" / "tools" / "node_modules" / "dotenv"
OP_EMAIL, OP_PASSWORD = "operator@example.org", "operator master password 1"
AGENT_UID = 1234 if os.geteuid() == 0 else os.geteuid()
AGENT_GID = 1234 if os.geteuid() == 0 else os.getegid()
TRICKY = {
    "MULTI": "line one\nline two\n",
    "DOLLAR": 'cost $5 `id` "q" $(whoami) # no comment',
    "QUOTE": "it's",
    "SPACES": "  lead and trail  ",
    "UNICODE": "ünïcödé 🐦 \u2028",
    "WINPATH": "C:\\path\\to",
}


@dataclass
class World:
    server: VaultwardenServer
    base: Path
    env: dict[str, str]
    client_id: str
    client_secret: str
    collections: dict[str, Collection] = field(default_factory=dict)
    items: dict[str, Item] = field(default_factory=dict)

    @property
    def jails(self) -> Path:
        return self.base / "jails"

    @property
    def db_url(self) -> str:
        return f"sqlite:///{self.base / 'state' / 'colibri.db'}"

    def colibri(self, *args: str, stdin: str = "", extra: dict[str, str] | None = None) -> "Run":
        return Run.start(self, args, stdin, extra).wait()

    def secrets(self) -> list[str]:
        return [self.client_id, self.client_secret, OP_PASSWORD]


@dataclass
class Run:
    proc: subprocess.Popen[str]
    stdout: str = ""
    stderr: str = ""

    @classmethod
    def start(cls, world: World, args: tuple[str, ...], stdin: str = "", extra: dict[str, str] | None = None) -> "Run":
        env = {k: v for k, v in os.environ.items() if not k.startswith(("COLIBRI_", "BW_", "BITWARDENCLI_"))}
        env.update(world.env, **(extra or {}))
        proc = subprocess.Popen(
            [sys.executable, "-m", "colibri", *args],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        run = cls(proc)
        run._stdin = stdin
        return run

    def wait(self, timeout: float = 240) -> "Run":
        self.stdout, self.stderr = self.proc.communicate(self._stdin, timeout=timeout)
        return self

    @property
    def rc(self) -> int:
        return self.proc.returncode

    def json(self) -> Any:
        return json.loads(self.stdout)

    def __str__(self) -> str:
        return f"rc {self.rc}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"


def _private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def _write_creds(folder: Path, values: tuple[str, str, str]) -> None:
    _private_dir(folder)
    for name, value in zip(("client_id", "client_secret", "master_password"), values, strict=True):
        (folder / name).write_text(value + "\n")
        (folder / name).chmod(0o600)


def make_world(tmp_path_factory: pytest.TempPathFactory, *, login: bool = True) -> Iterator[World]:
    """A world for a test module (its fixture yields from this); ``login``: ``vault login`` first."""
    bw = find_bw()
    require(bw is not None, "the pinned bw CLI (bash tests/setup.sh)")
    assert bw is not None
    server = start(user_key_id_route=False)  # like real Vaultwarden releases up to 2026-08
    base = tmp_path_factory.mktemp("provision")
    operator = server.vault.add_user(OP_EMAIL, OP_PASSWORD)
    org = server.vault.add_org("Hive", owner=operator)
    (base / "colibri.toml").write_text("")
    env = {
        "COLIBRI_CONFIG": str(base / "colibri.toml"),
        "COLIBRI_STATE_DIR": str(base / "state"),
        "COLIBRI_LOG_DIR": str(base / "log"),
        "COLIBRI_RUN_DIR": str(base / "run"),
        "COLIBRI_HOST": "testhost",
        "COLIBRI_JAIL_USER": "agent",
        "COLIBRI_VAULT_URL": server.url,
        "COLIBRI_VAULT_ORGANIZATION_ID": org.id,
        "COLIBRI_VAULT_CA_FILE": str(server.ca_cert_path),
        "COLIBRI_VAULT_CREDENTIALS_DIR": str(base / "credentials"),
        "COLIBRI_BW_PATH": str(bw),
        "COLIBRI_STAGED_SECRETS_DIR": str(_private_dir(base / "staged")),
        "COLIBRI_SECRETS_ALLOWED_ROOTS": json.dumps([str(base / "jails")]),
        "COLIBRI_SANDBOX_DIR": str(base / "jails"),  # the rows' jail roots are where the backend keeps jails
    }
    (base / "jails").mkdir()
    world = World(server, base, env, operator.client_id, operator.client_secret)
    if login:
        run = world.colibri(
            "vault",
            "login",
            "--files",
            "--stdin",
            stdin=f"{operator.client_id}\n{operator.client_secret}\n{OP_PASSWORD}\n",
        )
        assert run.rc == 0, str(run)
        assert [r.status for r in server.requests_to("/api/accounts/key-management/user-key-id", "POST")][:1] == [404]
    try:
        yield world
    finally:
        server.stop()


def add_tenant(world: World, tenant: str, collection: str | None = None, *, root: Path | None = None) -> Path:
    """Register a tenant with a fake jail root (etc/passwd + home/agent); return its .env path."""
    store = Store(world.db_url)
    try:
        with as_host(Path(world.env["COLIBRI_STATE_DIR"])):
            TenantService(store, "testhost").register(tenant, collection, None)
        root = root or world.jails / tenant / "root"
        (root / "home" / "agent").mkdir(parents=True, exist_ok=True)
        os.chown(root / "home" / "agent", AGENT_UID, AGENT_GID)
        (root / "etc").mkdir(exist_ok=True)
        (root / "etc" / "passwd").write_text(
            f"root:*:0:0::/root:/bin/sh\nagent:*:{AGENT_UID}:{AGENT_GID}::/home/agent:/bin/sh\n"
        )
        with store.session() as session:
            row = session.get(Tenant, tenant)
            assert row is not None
            row.backend, row.jail_root = "sandbox", str(root)
    finally:
        store.close()
    return root / "home" / "agent" / ".env"


def tenant_row(world: World, tenant: str) -> Tenant:
    store = Store(world.db_url)
    try:
        with store.session() as session:
            row = session.get(Tenant, tenant)
            assert row is not None
            return row
    finally:
        store.close()


def set_collection_id(world: World, tenant: str, collection_id: str) -> None:
    store = Store(world.db_url)
    try:
        with store.session() as session:
            row = session.get(Tenant, tenant)
            assert row is not None
            row.collection_id = collection_id
    finally:
        store.close()


class ProcessScan:
    """Polls every process's argv (and bw's environment, for the session key) while running.
    ``bw_calls`` and ``sessions`` are those of bw processes whose data directory is ``appdata``
    (this test's colibri), when given: other suites and xdist workers run bw on this host too."""

    def __init__(self, appdata: Path | None = None) -> None:
        self.appdata = None if appdata is None else str(appdata)
        self.argvs: set[str] = set()
        self.bw_calls: set[str] = set()
        self.sessions: set[str] = set()
        self.bw_seen = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> "ProcessScan":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.is_set():
            for proc in psutil.process_iter(["pid", "cmdline"]):
                try:
                    argv = " ".join(proc.info["cmdline"] or ())
                    self.argvs.add(argv)
                    if "/bw" in argv or "@bitwarden" in argv:
                        env = proc.environ()
                        if self.appdata is not None and env.get("BITWARDENCLI_APPDATA_DIR") != self.appdata:
                            continue
                        self.bw_seen += 1
                        self.bw_calls.add(argv)
                        session = env.get("BW_SESSION")
                        if session:
                            self.sessions.add(session)
                except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                    continue
            time.sleep(0.01)


def files_under(root: Path, skip: Path | None = None) -> Iterator[Path]:
    for path in root.rglob("*"):
        if path.is_symlink() or not path.is_file():
            continue
        if skip is not None and (path == skip or skip in path.parents):
            continue
        yield path


def read_back(path: Path) -> tuple[dict[str, str | None], dict[str, str], dict[str, str]]:
    """The .env as python-dotenv, node's dotenv and POSIX sh read it."""
    py = dict(dotenv_values(path))
    script = (
        "const d=require(process.argv[1]);"
        "process.stdout.write(JSON.stringify(d.parse(require('fs').readFileSync(process.argv[2]))))"
    )
    node = json.loads(
        subprocess.run(["node", "-e", script, str(NODE_DOTENV), str(path)], capture_output=True, check=True).stdout
    )
    keys = [k for k in py]
    printer = "; ".join(f'printf "%s\\0" "${k}"' for k in keys)
    out = subprocess.run(["sh", "-c", f". {path}; {printer}"], capture_output=True, check=True).stdout.decode()
    sh = dict(zip(keys, out.split("\0")[:-1], strict=True))
    return py, node, sh
