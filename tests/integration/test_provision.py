"""Vault-provision against the REAL bw CLI (pinned 2026.9.0) and the Vaultwarden-compatible server.

Each bw process costs about 3 s, so one server, one bw data directory and one logged-in operator
are shared by the module (``vault login`` runs once, against a server WITHOUT the user-key-id
route, which proves the retry of bw's first unlock).  The faults of issue 4 are batched: one
``provision --all`` covers every tenant-level fault with a single vault session.
"""

import json
import os
import random
import signal
import stat
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

from colibri.adapters import envfile
from colibri.errors import SecretsError
from colibri.services.tenants import TenantService
from colibri.store.db import Store
from colibri.store.models import Tenant
from tests.conftest import REPO, require
from tests.servers.vaultwarden import Collection, Item, Role, VaultwardenServer, start
from tests.servers.vaultwarden.bwcli import find_bw

pytestmark = pytest.mark.integration

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


@pytest.fixture(name="world", scope="module")
def world_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
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
    }
    (base / "jails").mkdir()
    world = World(server, base, env, operator.client_id, operator.client_secret)
    login = world.colibri(
        "vault", "login", "--files", "--stdin", stdin=f"{operator.client_id}\n{operator.client_secret}\n{OP_PASSWORD}\n"
    )
    assert login.rc == 0, str(login)
    assert [r.status for r in server.requests_to("/api/accounts/key-management/user-key-id", "POST")][:1] == [404]
    try:
        yield world
    finally:
        server.stop()


def add_tenant(world: World, tenant: str, collection: str | None = None, *, root: Path | None = None) -> Path:
    """Register a tenant with a fake jail root (etc/passwd + home/agent); return its .env path."""
    store = Store(world.db_url)
    try:
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


# --- the tests ---------------------------------------------------------------------------------


def test_batch_provision_every_fault_one_session_and_no_leak(world: World, tmp_path: Path) -> None:
    require(NODE_DOTENV.is_dir(), "node dotenv in tests/tools (npm ci)")
    vault, org_id = world.server.vault, world.env["COLIBRI_VAULT_ORGANIZATION_ID"]
    org = vault.orgs[org_id]

    def collection(name: str, *items: tuple[str, dict[str, str], str | None]) -> Collection:
        col = vault.add_collection(org, name)
        for item_name, fields, notes in items:
            world.items[f"{name}/{item_name}"] = vault.add_item(col, item_name, fields=fields, notes=notes)
        return col

    collection("acme", ("env", TRICKY, "API_KEY=sk-acme-1\n# a comment\nexport REGION=eu\n"))
    collection("dupkeys", ("one", {"TOKEN": "a"}, None), ("two", {}, "TOKEN=b"))
    collection("badkey", ("env", {"BAD-KEY": "v"}, None))
    collection("nulval", ("env", {"NUL": "a\0b"}, None))
    collection("bigval", ("env", {"BIG": "x" * 10_000_000}, None))
    collection("quotebad", ("env", {"Q": "it's $HOME"}, None))
    for name in ("symlinkenv", "homeetc", "outside", "nouser"):
        collection(name, ("env", {"K": "v"}, None))
    renamed = collection("renamed", ("env", {"K": "v"}, None))
    deleted = collection("deleted", ("env", {"K": "v"}, None))

    envs = {t: add_tenant(world, t) for t in ("acme", "ghost", "dupkeys", "badkey", "nulval", "bigval", "quotebad")}
    envs["nocoll"] = add_tenant(world, "nocoll", "")
    envs["symlinkenv"] = add_tenant(world, "symlinkenv")
    victim = tmp_path / "victim"
    victim.write_text("precious")
    envs["symlinkenv"].symlink_to(victim)
    envs["homeetc"] = add_tenant(world, "homeetc")
    home_dir = envs["homeetc"].parent.parent
    (home_dir / "agent").rmdir()
    home_dir.rmdir()
    home_dir.symlink_to("/etc")
    outside_root = world.base / "elsewhere" / "outside" / "root"
    envs["outside"] = add_tenant(world, "outside", root=outside_root)
    envs["nouser"] = add_tenant(world, "nouser")
    (world.jails / "nouser" / "root" / "etc" / "passwd").write_text("root:*:0:0::/root:/bin/sh\n")
    for name, col in (("renamed", renamed), ("deleted", deleted)):
        envs[name] = add_tenant(world, name)
        set_collection_id(world, name, col.id)
    vault.rename_collection(renamed, "renamed-elsewhere")
    vault.delete_collection(deleted)
    staged = _private_dir(world.base / "staged" / "staged")
    (staged / "provider.env").write_text("OPENROUTER_API_KEY=sk-or-staged\n")
    (staged / "provider.env").chmod(0o600)
    envs["staged"] = add_tenant(world, "staged")
    old = b"OLD='kept'\n"
    for tenant in (
        "ghost",
        "dupkeys",
        "badkey",
        "nulval",
        "bigval",
        "quotebad",
        "nouser",
        "renamed",
        "deleted",
        "outside",
    ):
        envs[tenant].write_bytes(old)
    world.server.clear_requests()

    with ProcessScan(world.base / "state" / "bw") as scan:
        run = world.colibri("provision", "--all", "--json")
    vault.delete_item(world.items["bigval/env"])  # 10 MB would slow every later listing
    assert run.rc == 12, str(run)
    document = run.json()
    # it failed partly, and says so (it said "ok": true), with each tenant's outcome
    assert document["ok"] is False and document["error"]["type"] == "PartialFailure", document.get("error")
    report = {r["tenant_id"]: r for r in document["data"]}
    failed = sum(1 for r in report.values() if r["outcome"] == "failed")
    # the module's world may hold other tests' tenants too: the count must match the outcomes listed
    assert failed >= 12, report
    assert document["error"]["code"] == 12
    assert f"{failed} of {len(report)} tenants failed: " in document["error"]["message"]
    outcome = {t: (r["outcome"], r["message"]) for t, r in report.items()}
    # one code for every refusal: the symlinked .env and home, the root outside were 6
    assert {r["error"]["code"] for r in report.values() if r["outcome"] == "failed"} == {12}

    # one vault session for all: one sync request, one unlock (bw lists serve from data.json)
    assert len(world.server.requests_to("/api/sync")) <= 1
    assert outcome["acme"][0] == "written" and outcome["staged"][0] == "written"
    assert outcome["nocoll"] == ("skipped", "tenant has no collection: nothing to do")
    expected_failures = {
        "ghost": "collection 'ghost' not found in organization",
        "dupkeys": "duplicate key TOKEN: from item 'one'",
        "badkey": "invalid key (item 'env'",
        "nulval": "contains a NUL byte",
        "bigval": "bytes; at most 65536 are allowed",
        "quotebad": "contains a single quote together with one of",
        "symlinkenv": "home/agent/.env: it is a symlink",
        "homeetc": "/home: it is a symlink",
        "outside": "outside the allowed roots",
        "nouser": "user agent is missing from the jail's /etc/passwd",
        "renamed": "was renamed from 'renamed' to 'renamed-elsewhere'",
        "deleted": "was deleted",
    }
    for tenant, needle in expected_failures.items():
        assert outcome[tenant][0] == "failed", (tenant, outcome[tenant])
        assert needle in outcome[tenant][1], (tenant, outcome[tenant])
        row = tenant_row(world, tenant)
        assert row.secrets_status == "stale" and needle in (row.secrets_error or "")
    for tenant in (
        "ghost",
        "dupkeys",
        "badkey",
        "nulval",
        "bigval",
        "quotebad",
        "nouser",
        "renamed",
        "deleted",
        "outside",
    ):
        assert envs[tenant].read_bytes() == old, tenant
    assert victim.read_text() == "precious" and envs["symlinkenv"].is_symlink()
    assert not Path("/etc/agent").exists()

    # the good tenant's file: 0600, owned by the jail's user, exact values through sh/python/node
    info = envs["acme"].stat()
    assert (stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid) == (0o600, AGENT_UID, AGENT_GID)
    wanted = {**TRICKY, "API_KEY": "sk-acme-1", "REGION": "eu"}
    py, node, sh = read_back(envs["acme"])
    assert py == wanted and node == wanted and sh == wanted
    assert envs["staged"].read_text().endswith("OPENROUTER_API_KEY='sk-or-staged'\n")
    assert tenant_row(world, "acme").secrets_status == "ok"

    # no operator credential and no session key in any argv, jail, the store or the logs
    assert scan.bw_seen and scan.sessions, "the scan saw no bw process holding a session"
    needles = [*world.secrets(), *scan.sessions]
    for argv in scan.argvs:
        assert not any(n in argv for n in needles), argv
    for path in [*files_under(world.jails), *files_under(world.base / "state", skip=world.base / "state" / "bw")]:
        data = path.read_bytes()
        assert not any(n.encode() in data for n in needles), path
    for text in (run.stdout, run.stderr):
        assert not any(n in text for n in needles)
    assert not any(v in run.stdout + run.stderr for v in ("sk-acme-1", "sk-or-staged", "a\0b"))


def test_two_at_once_idempotent_and_a_vault_change_is_picked_up(world: World) -> None:
    vault = world.server.vault
    col = vault.add_collection(vault.orgs[world.env["COLIBRI_VAULT_ORGANIZATION_ID"]], "solo")
    item = vault.add_item(col, "env", fields={"TOKEN": "v1"})
    env = add_tenant(world, "solo")
    runs = [Run.start(world, ("provision", "solo", "--json")) for _ in range(2)]
    results = [r.wait() for r in runs]
    assert [r.rc for r in results] == [0, 0], [str(r) for r in results]
    outcomes = sorted(r.json()["data"]["outcome"] for r in results)
    assert outcomes == ["unchanged", "written"], [str(r) for r in results]
    assert env.read_text().endswith("TOKEN='v1'\n")
    first = tenant_row(world, "solo").secrets_changed_at
    inode = env.stat().st_ino

    time.sleep(1.1)  # secrets_changed_at has a resolution of one second
    vault.set_field(item, "TOKEN", "v2")
    run = world.colibri("provision", "solo", "--json")
    assert run.rc == 0 and run.json()["data"]["outcome"] == "written", str(run)
    assert env.read_text().endswith("TOKEN='v2'\n") and env.stat().st_ino != inode
    assert tenant_row(world, "solo").secrets_changed_at != first


def test_one_tenant_names_every_bad_value_and_lists_only_its_own_collection(world: World) -> None:
    """Issue 9: a refused tenant named only its first bad value (one fix per 20-30 s run), and
    provisioning one tenant listed (decrypted, kept) every item of the organization."""
    vault = world.server.vault
    org = vault.orgs[world.env["COLIBRI_VAULT_ORGANIZATION_ID"]]
    col = vault.add_collection(org, "multi")
    vault.add_item(col, "env", fields={"NUL": "nul\0val", "1BAD": "v1bad", "OK": "okval"}, notes="free text\nOK=dupval")
    other = vault.add_collection(org, "bystander")
    vault.add_item(other, "env", fields={"K": "v"})
    env = add_tenant(world, "multi")
    env.write_bytes(b"OLD='kept'\n")
    with ProcessScan(world.base / "state" / "bw") as scan:
        run = world.colibri("provision", "multi")
    assert run.rc == 12, str(run)
    lines = run.stderr.splitlines()
    assert (
        lines[0]
        == "colibri: secrets of tenant multi from collection multi: 4 problems, nothing written; the old .env is kept:"
    )
    assert len(lines) == 5, run.stderr
    assert "'NUL' (item 'env'" in run.stderr and "contains a NUL byte" in run.stderr
    assert "invalid key (item 'env'" in run.stderr and "notes line 1 is not KEY=VALUE" in run.stderr
    assert "duplicate key OK: from item 'env'" in run.stderr
    assert not any(v in run.stdout + run.stderr for v in ("nul\0val", "v1bad", "okval", "free text", "dupval"))
    assert env.read_bytes() == b"OLD='kept'\n"
    listings = [a for a in scan.bw_calls if "list items" in a]  # this colibri's bw only (ProcessScan)
    assert listings and all(a.endswith(f"list items --collectionid {col.id}") for a in listings), listings
    run = world.colibri("provision", "multi", "--json")
    document = run.json()
    assert (run.rc, document["ok"], document["error"]["code"]) == (12, False, 12)
    assert document["data"]["outcome"] == "failed" and document["data"]["problems_total"] == 4


def test_symlinked_env_or_home_exits_12_as_documented(world: World, tmp_path: Path) -> None:
    """Issue 9: these exited 6 while provision --help and the README say 12 (staged secrets: no bw)."""
    for tenant in ("symenv", "symhome"):
        folder = _private_dir(world.base / "staged" / tenant)
        (folder / "provider.env").write_text("K=v\n")
        (folder / "provider.env").chmod(0o600)
    victim = tmp_path / "victim"
    victim.write_text("precious")
    add_tenant(world, "symenv").symlink_to(victim)
    home = add_tenant(world, "symhome").parent
    home.rmdir()
    home.symlink_to(tmp_path)
    for tenant, needle in (("symenv", "home/agent/.env: it is a symlink"), ("symhome", "home/agent: it is a symlink")):
        run = world.colibri("provision", tenant)
        assert run.rc == 12 and needle in run.stderr and run.stderr.count("\n") == 1, str(run)
    assert victim.read_text() == "precious"
    help_text = world.colibri("provision", "--help").stdout
    assert "exit code is 12" in " ".join(help_text.split())


def test_vault_status_reports_bw_logged_in_to_another_server(world: World) -> None:
    """Issue 9: it showed server_matches False and no problem (bw status is local: no request)."""
    run = world.colibri("vault", "status", "--json", extra={"COLIBRI_VAULT_URL": "https://vault.invalid"})
    assert run.rc == 0, str(run)
    data = run.json()["data"]
    assert data["server_matches"] is False
    assert any(
        f"is logged in to {world.server.url}" in p
        and "not to vault_url https://vault.invalid" in p
        and "run 'colibri vault login'" in p
        for p in data["problems"]
    ), data["problems"]
    run = world.colibri("vault", "status")
    assert run.rc == 0 and "problems" in run.stdout and "logged in to" not in run.stdout, str(run)


def test_wrong_master_password_keeps_old_env_and_marks_stale(world: World, tmp_path: Path) -> None:
    env = add_tenant(world, "wrongpw")
    env.write_bytes(b"OLD='kept'\n")
    creds = tmp_path / "creds"
    _write_creds(creds, (world.client_id, world.client_secret, "not the master password"))
    run = world.colibri("provision", "wrongpw", extra={"COLIBRI_VAULT_CREDENTIALS_DIR": str(creds)})
    assert run.rc == 12, str(run)
    assert run.stderr == "colibri: bw unlock failed: wrong master password: bw could not decrypt the vault key\n"
    assert env.read_bytes() == b"OLD='kept'\n"
    assert tenant_row(world, "wrongpw").secrets_status == "stale"


def test_wrong_server_url_is_refused_before_any_credential_is_sent(world: World) -> None:
    add_tenant(world, "wrongurl")
    world.server.clear_requests()
    run = world.colibri("provision", "wrongurl", extra={"COLIBRI_VAULT_URL": "https://vault.invalid"})
    assert run.rc == 12, str(run)
    assert "not to vault_url https://vault.invalid: refusing to send credentials" in run.stderr
    assert world.server.requests == []


def test_loose_credentials_dir_is_refused(world: World, tmp_path: Path) -> None:
    add_tenant(world, "loose")
    creds = tmp_path / "loose-creds"
    _write_creds(creds, (world.client_id, world.client_secret, OP_PASSWORD))
    (creds / "client_secret").chmod(0o640)
    run = world.colibri("provision", "loose", extra={"COLIBRI_VAULT_CREDENTIALS_DIR": str(creds)})
    assert run.rc == 12, str(run)  # every provisioning refusal is 12 (was 6, PermissionDenied)
    assert f"{creds / 'client_secret'} is mode 0640: refusing it" in run.stderr


@pytest.mark.parametrize("fault", ["wrong client secret", "server answers garbage", "server down"])
def test_login_faults_on_a_fresh_data_dir(world: World, tmp_path: Path, fault: str) -> None:
    server = start()
    try:
        user = server.vault.add_user("fresh@example.org", "fresh master pw")
        org = server.vault.add_org("Fresh", owner=user)
        server.vault.add_member(org, user, Role.OWNER)
        state = tmp_path / "state"
        creds = tmp_path / "creds"
        secret = "wrong-secret" if fault == "wrong client secret" else user.client_secret
        _write_creds(creds, (user.client_id, secret, "fresh master pw"))
        if fault == "server answers garbage":
            server.set_mode("garbage")
        if fault == "server down":
            server.set_mode("down")
        extra = {
            "COLIBRI_VAULT_URL": server.url,
            "COLIBRI_VAULT_ORGANIZATION_ID": org.id,
            "COLIBRI_VAULT_CA_FILE": str(server.ca_cert_path),
            "COLIBRI_VAULT_CREDENTIALS_DIR": str(creds),
            "COLIBRI_STATE_DIR": str(state),
        }
        run = world.colibri("vault", "check", extra=extra)
        assert run.rc == 12, str(run)
        message = {
            "wrong client secret": "wrong client id or secret",
            "server answers garbage": "bw login --apikey failed",
            "server down": "cannot reach the vault server (connection refused)",
        }[fault]
        assert message in run.stderr, str(run)
        assert user.client_secret not in run.stderr + run.stdout
    finally:
        server.stop()


def test_kill_9_during_the_write_leaves_old_or_new(tmp_path: Path) -> None:
    root = tmp_path / "jails" / "k" / "root"
    (root / "home" / "agent").mkdir(parents=True)
    (root / "etc").mkdir()
    (root / "etc" / "passwd").write_text(f"agent:*:{os.geteuid()}:{os.getegid()}::/home/agent:/bin/sh\n")
    contents = [envfile.render([envfile.Entry("K", c * 60000, "t")], "h") for c in "ab"]
    writer = (
        "import sys; from pathlib import Path; from colibri.adapters import envfile\n"
        "a, b = (open(p, 'rb').read() for p in sys.argv[2:4])\n"
        "print('ready', flush=True)\n"
        "root = Path(sys.argv[1])\n"
        "while True:\n"
        "    for c in (a, b): envfile.write_jail_env(root, 'agent', c, [root.parent.parent])\n"
    )
    for i, c in enumerate(contents):
        (tmp_path / f"c{i}").write_bytes(c)
    env_path = root / "home" / "agent" / ".env"
    envfile.write_jail_env(root, "agent", contents[0], [tmp_path / "jails"])  # the "old" file
    rnd = random.Random(4)
    for _ in range(20):
        proc = subprocess.Popen(
            [sys.executable, "-c", writer, str(root), str(tmp_path / "c0"), str(tmp_path / "c1")],
            stdout=subprocess.PIPE,
            cwd=REPO,
        )
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        time.sleep(rnd.uniform(0.01, 0.2))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        assert env_path.read_bytes() in contents
        assert stat.S_IMODE(env_path.stat().st_mode) == 0o600
    # the next write cleans up temporaries a killed writer left
    envfile.write_jail_env(root, "agent", b"K='z'\n", [tmp_path / "jails"])
    assert sorted(os.listdir(root / "home" / "agent")) == [".env"]


def test_round_trip_of_random_values_through_sh_python_and_node(tmp_path: Path) -> None:
    require(NODE_DOTENV.is_dir(), "node dotenv in tests/tools (npm ci)")
    alphabet = [
        "a",
        "'",
        '"',
        "\\",
        "$",
        "{",
        "}",
        "`",
        "\n",
        "\t",
        " ",
        "#",
        "=",
        "\u2028",
        "\x85",
        "é",
        "\x0b",
        "(",
        "!",
        "*",
        "~",
        "n",
        "\x7f",
        "\x01",
        "🐦",
    ]
    rnd = random.Random(7)
    accepted: list[str] = []
    refused = 0
    while len(accepted) < 400:
        value = "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 10)))
        try:
            data = envfile.render([envfile.Entry("V", value, "fuzz")], "fuzz")
        except SecretsError:
            refused += 1
            continue
        (tmp_path / f"{len(accepted):04d}.env").write_bytes(data)
        accepted.append(value)
    files = sorted(str(p) for p in tmp_path.glob("*.env"))
    py = [dotenv_values(f).get("V") for f in files]
    script = (
        "const d=require(process.argv[1]);const fs=require('fs');"
        "process.stdout.write(JSON.stringify(process.argv.slice(2).map(f=>d.parse(fs.readFileSync(f)).V)))"
    )
    node = json.loads(
        subprocess.run(["node", "-e", script, str(NODE_DOTENV), *files], capture_output=True, check=True).stdout
    )
    out = subprocess.run(
        ["sh", "-c", 'for f in "$@"; do (. "$f"; printf "%s\\0" "$V"); done', "sh", *files],
        capture_output=True,
        check=True,
    ).stdout.decode()
    sh = out.split("\0")[:-1]
    assert py == accepted and node == accepted and sh == accepted
    assert refused > 0


def test_hostile_etc_passwd_fails_fast_and_provision_all_goes_on(tmp_path: Path) -> None:
    """A jail's etc/passwd is the jail's to plant: a FIFO (which hung provision before: the open
    blocked until a writer came), a symlink to a host file, a 2 MiB file, a device node, a uid
    no uid_t holds (an OverflowError traceback before, which also stopped --all).  Each tenant
    fails fast with exit 12; --all reports them and still writes the good tenants' .env."""
    staged, jails = _private_dir(tmp_path / "staged"), tmp_path / "jails"
    env = {
        "COLIBRI_CONFIG": str(tmp_path / "colibri.toml"),
        "COLIBRI_STATE_DIR": str(tmp_path / "state"),
        "COLIBRI_RUN_DIR": str(tmp_path / "run"),
        "COLIBRI_LOG_DIR": str(tmp_path / "log"),
        "COLIBRI_HOST": "testhost",
        "COLIBRI_STAGED_SECRETS_DIR": str(staged),
        "COLIBRI_SECRETS_ALLOWED_ROOTS": json.dumps([str(jails)]),
    }
    (tmp_path / "colibri.toml").write_text("")
    store = Store(f"sqlite:///{tmp_path / 'state' / 'colibri.db'}")
    hostile = {"pwfifo": "FIFO", "pwlink": "symlink", "pwhuge": "2 MiB", "pwdev": "device node", "pwuid": "uid 2**40"}
    try:
        for tenant in ("agood", *hostile, "zgood"):
            TenantService(store, "testhost").register(tenant, "", None)
            root = jails / tenant / "root"
            (root / "home" / "agent").mkdir(parents=True)
            os.chown(root / "home" / "agent", AGENT_UID, AGENT_GID)
            (root / "etc").mkdir()
            folder = _private_dir(staged / tenant)
            (folder / "provider.env").write_text(f"KEY={tenant}\n")
            (folder / "provider.env").chmod(0o600)
            with store.session() as session:
                row = session.get(Tenant, tenant)
                assert row is not None
                row.backend, row.jail_root = "sandbox", str(root)
    finally:
        store.close()
    passwd = f"root:*:0:0::/root:/bin/sh\nagent:*:{AGENT_UID}:{AGENT_GID}::/home/agent:/bin/sh\n"
    for tenant in ("agood", "zgood"):
        (jails / tenant / "root" / "etc" / "passwd").write_text(passwd)
    os.mkfifo(jails / "pwfifo" / "root" / "etc" / "passwd")
    host_passwd = tmp_path / "host-passwd"
    host_passwd.write_text(passwd)
    (jails / "pwlink" / "root" / "etc" / "passwd").symlink_to(host_passwd)
    (jails / "pwhuge" / "root" / "etc" / "passwd").write_text(passwd + "#" * (2 << 20) + "\n")
    os.mknod(jails / "pwdev" / "root" / "etc" / "passwd", 0o644 | stat.S_IFCHR, os.makedev(1, 3))  # /dev/null
    (jails / "pwuid" / "root" / "etc" / "passwd").write_text(f"agent:*:{2**40}:{AGENT_GID}::/home/agent:/bin/sh\n")

    def colibri(*args: str) -> subprocess.CompletedProcess[str]:
        full = {k: v for k, v in os.environ.items() if not k.startswith(("COLIBRI_", "BW_"))} | env
        cmd = [sys.executable, "-m", "colibri", *args]
        return subprocess.run(cmd, env=full, capture_output=True, text=True, timeout=30, cwd=REPO)

    for tenant, what in hostile.items():
        started = time.monotonic()
        run = colibri("provision", tenant)
        assert run.returncode == 12, (what, run.stdout, run.stderr)
        assert time.monotonic() - started < 10, what
        assert run.stderr.count("\n") == 1 and "Traceback" not in run.stderr, (what, run.stderr)
        assert "/etc/passwd" in run.stderr, (what, run.stderr)
    run = colibri("provision", "--all", "--json")
    assert run.returncode == 12, run.stderr
    assert json.loads(run.stdout)["ok"] is False
    outcome = {r["tenant_id"]: r["outcome"] for r in json.loads(run.stdout)["data"]}
    assert outcome == {"agood": "written", "zgood": "written", **{t: "failed" for t in hostile}}
    for tenant in ("agood", "zgood"):
        assert (jails / tenant / "root" / "home" / "agent" / ".env").read_text().endswith(f"KEY='{tenant}'\n")
    for tenant in hostile:
        assert not (jails / tenant / "root" / "home" / "agent" / ".env").exists()
