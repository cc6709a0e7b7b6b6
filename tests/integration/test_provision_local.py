"""Vault-provision without the operator's session: login faults on a fresh bw data directory, the
.env write under kill -9, values through sh/python/node, a jail's hostile etc/passwd."""

import json
import os
import random
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dotenv import dotenv_values

from colibri.adapters import envfile
from colibri.errors import SecretsError
from colibri.services.tenants import TenantService
from colibri.store.db import Store
from colibri.store.models import Tenant
from tests.conftest import REPO, require
from tests.integration.as_host import as_host
from tests.integration.provision_world import (
    AGENT_GID,
    AGENT_UID,
    NODE_DOTENV,
    World,
    _private_dir,
    _write_creds,
    make_world,
)
from tests.servers.vaultwarden import Role, start

pytestmark = pytest.mark.integration


@pytest.fixture(name="world", scope="module")
def world_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """The world without the operator's login: these tests log in on their own data directory, or need no bw."""
    yield from make_world(tmp_path_factory, login=False)


# --- the tests ---------------------------------------------------------------------------------


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
        "COLIBRI_SANDBOX_DIR": str(jails),  # the rows' jail roots are where the backend keeps jails
    }
    (tmp_path / "colibri.toml").write_text("")
    store = Store(f"sqlite:///{tmp_path / 'state' / 'colibri.db'}")
    hostile = {"pwfifo": "FIFO", "pwlink": "symlink", "pwhuge": "2 MiB", "pwdev": "device node", "pwuid": "uid 2**40"}
    try:
        for tenant in ("agood", *hostile, "zgood"):
            with as_host(tmp_path / "state"):
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
        # A hang (the FIFO's open blocked for good) is this timeout's TimeoutExpired; no seconds
        # bound of its own: a provision takes 2 s here idle, and one took 23 s in CI under its load.
        return subprocess.run(cmd, env=full, capture_output=True, text=True, timeout=120, cwd=REPO)

    for tenant, what in hostile.items():
        run = colibri("provision", tenant)
        assert run.returncode == 12, (what, run.stdout, run.stderr)
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
