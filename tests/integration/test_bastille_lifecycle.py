"""Issue 9, "done when": the whole Bastille lifecycle in one test, on a freshly bootstrapped emulated
host with the shipped template (jails/agent) unchanged, driven through the CLI as an operator would.

register 2 tenants → spawn both in one call (mother ready, .env 0600 owned by the jail user) → stop →
start → reconcile after drift (a jail stopped behind colibri's back, a foreign jail) → reconcile
--apply → adopt a prepared jail → release it (nothing of colibri's left in it) → destroy →
remove-tenant --destroy-jail.

The emulator (tests/emulators/bastille) runs bastille 1.4.4, jls, jexec, mount -p, and inside the
jails rc.subr, service(8), daemon(8) and pkg(7)/pkg(8); the mother is the real skill.  The CLI
finds the emulator's commands first on PATH, as an operator's shell finds /usr/local/bin.
"""

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from colibri.adapters.bastille import pkgrepo
from tests.conftest import Invoke
from tests.contract.conftest import warm_package_cache
from tests.emulators.bastille.fixtures import BastilleEmulator, make_emulator

pytestmark = pytest.mark.integration

REL = "14.3-RELEASE"


@pytest.fixture(name="host")
def host_fixture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> BastilleEmulator:
    """A fresh host: bastille installed and configured, nothing bootstrapped yet."""
    emu = make_emulator(tmp_path / "host", release=None)
    monkeypatch.setenv("PATH", emu.env["PATH"])
    monkeypatch.setenv("COLIBRI_JAIL_BACKEND", "bastille")
    monkeypatch.setenv("COLIBRI_BASTILLE_PREFIX", str(emu.prefix))
    monkeypatch.setenv("COLIBRI_BASTILLE_CONFIG", str(emu.conf_path))
    monkeypatch.setenv("COLIBRI_BASTILLE_RELEASE", REL)
    monkeypatch.setenv("COLIBRI_JAIL_IP_POOL", "10.17.90.0/24")
    yield emu
    emu.stop_all()


def ok(result: tuple[int, str, str]) -> str:
    code, out, err = result
    assert code == 0, f"exit {code}: {out}{err}"
    return out


def data(result: tuple[int, str, str]) -> object:
    return json.loads(ok(result))["data"]


def show(invoke: Invoke, tenant: str) -> dict[str, object]:
    record = data(invoke("show-tenant", tenant, "--json"))
    assert isinstance(record, dict)
    return record


def ready_lines(root: Path) -> int:
    log = root / "var/log/colibri_mother.log"
    return len(re.findall(r"^mother\[\d+\]: ready: ", log.read_text(), re.M)) if log.exists() else 0


def in_jail(emu: BastilleEmulator, jail: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["jexec", "-l", "-U", "root", jail, *argv], env=emu.env, capture_output=True, text=True)


def host_mounts(emu: BastilleEmulator) -> str:
    return subprocess.run(["mount", "-p", "-t", "nullfs"], env=emu.env, capture_output=True, text=True).stdout


def stage(tenant: str) -> None:
    """The tenant's secrets staged root-only (in place of a vault): provisioning writes its .env."""
    from colibri.cli.context import Context

    staged = Context().settings.staged_dir
    (staged / tenant).mkdir(parents=True, mode=0o700)
    staged.chmod(0o700)
    (staged / tenant / "provider.env").write_text(f"PROVIDER_KEY=key-of-{tenant}\n")
    (staged / tenant / "provider.env").chmod(0o600)


def snapshot(root: Path) -> dict[str, str]:
    """Every path of a jail root (its release under /.bastille and the emulator's own
    book-keeping ``.emulated-*`` aside) with owner, mode and content."""
    out = {}
    for path in sorted(root.rglob("*")):
        parts = path.relative_to(root).parts
        if ".bastille" in parts or any(p.startswith(".emulated-") for p in parts):
            continue
        st = path.lstat()
        body = path.read_bytes() if path.is_file() and not path.is_symlink() else b""
        out[str(path.relative_to(root))] = f"{st.st_uid}:{st.st_gid} {st.st_mode:o} {hash(body)}"
    return out


def test_the_whole_bastille_lifecycle(host: BastilleEmulator, invoke: Invoke, monkeypatch: pytest.MonkeyPatch) -> None:
    emu = host
    # ---- a fresh host: spawning before `bastille bootstrap` names the fix --------------------------
    ok(invoke("register-tenant", "acme", "--collection", ""))
    ok(invoke("register-tenant", "beta", "--collection", ""))
    code, _, err = invoke("spawn-agent", "acme")
    assert code == 11 and f"run 'bastille bootstrap {REL}'" in err, err
    # the operator bootstraps and warms the release's package cache (install-freebsd-host.md)
    assert emu.run("bootstrap", REL).returncode == 0
    first_party = warm_package_cache(emu.prefix / "releases" / REL, monkeypatch)
    for tenant in ("acme", "beta"):
        stage(tenant)

    # ---- spawn both in one call --------------------------------------------------------------------
    out = ok(invoke("spawn-agent", "acme", "beta"))
    assert out.splitlines()[-1] == "active: acme beta"
    roots = {}
    for tenant in ("acme", "beta"):
        record = show(invoke, tenant)
        assert (record["status"], record["spawn_step"], record["backend"]) == ("active", "active", "bastille")
        root = roots[tenant] = emu.jail_root(tenant)
        assert ready_lines(root) == 1  # the mother said it is ready
        env = root / "home/agent/.env"
        st = env.stat()
        assert (st.st_mode & 0o777, st.st_uid) == (0o600, record["agent_uid"])  # the jail user's
        assert f"PROVIDER_KEY='key-of-{tenant}'" in env.read_text().splitlines(), env.read_text()
        assert f"{root}/var/run/colibri" in host_mounts(emu)  # the socket mount is live
        assert in_jail(emu, tenant, "service", "colibri_mother", "status").returncode == 0

    # ---- stop, start -------------------------------------------------------------------------------
    ok(invoke("stop-agent", "acme"))
    assert show(invoke, "acme")["status"] == "stopped" and not emu.is_running("acme")
    ok(invoke("start-agent", "acme"))
    assert show(invoke, "acme")["status"] == "active" and ready_lines(roots["acme"]) == 2

    # ---- drift: a jail stopped behind colibri's back, a foreign jail --------------------------------
    assert emu.run("stop", "beta").returncode == 0
    assert emu.run("create", "zeta", REL, "10.17.90.200").returncode == 0  # not colibri's
    drifts = data(invoke("reconcile", "--json"))
    assert isinstance(drifts, list)
    assert sorted((d["kind"], d["jail"]) for d in drifts) == [("foreign_jail", "zeta"), ("stopped_jail", "beta")]
    assert not emu.is_running("beta")  # a dry run
    applied = data(invoke("reconcile", "--apply", "--json"))
    assert isinstance(applied, list)
    by_jail = {d["jail"]: d for d in applied}
    assert by_jail["beta"]["applied"] is True and by_jail["beta"]["error"] is None
    assert by_jail["zeta"]["applied"] is False  # report only: never colibri's to touch
    assert emu.is_running("beta") and ready_lines(roots["beta"]) == 2 and emu.is_running("zeta")
    assert [(d["kind"], d["jail"]) for d in data(invoke("reconcile", "--json"))] == [("foreign_jail", "zeta")]

    # ---- adopt a prepared jail, then release it --------------------------------------------------------
    assert emu.run("create", "gamma", REL, "10.17.90.201").returncode == 0
    # the operator gives it the first-party pkg config (adopt-jail.md), then applies the template
    pkgrepo.stage(emu.jail_root("gamma"), first_party, "paid")
    prepared = emu.run("template", "gamma", "colibri/agent")  # the operator prepares it with the template
    assert prepared.returncode == 0, prepared.stdout + prepared.stderr
    gamma = emu.jail_root("gamma")
    before, fstab_before = snapshot(gamma), (emu.jails_dir / "gamma/fstab").read_text()
    ok(invoke("register-tenant", "gamma", "--collection", ""))
    stage("gamma")
    code, _, err = invoke("destroy-agent", "zeta", "--yes")
    assert code == 4  # zeta is no tenant: colibri never touches it
    ok(invoke("spawn-agent", "gamma", "--jail-name", "gamma", "--jail-root", str(gamma)))
    record = show(invoke, "gamma")
    assert (record["status"], record["adopted"]) == ("active", True) and ready_lines(gamma) == 1
    assert (gamma / "home/agent/.env").stat().st_mode & 0o777 == 0o600
    code, _, err = invoke("destroy-agent", "gamma", "--yes")
    assert code == 5 and "colibri release-agent gamma" in err
    released = data(invoke("release-agent", "gamma", "--json"))
    assert isinstance(released, dict)
    assert "the mother (stopped)" in released["removed"] and "/home/agent/.env" in released["removed"]
    after = snapshot(gamma)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert changed == [], changed  # nothing of colibri's left in it, nothing of the jail's gone
    assert (emu.jails_dir / "gamma/fstab").read_text() == fstab_before
    assert f"{gamma}/var/run/colibri" not in host_mounts(emu)
    assert in_jail(emu, "gamma", "service", "colibri_mother", "status").returncode == 1
    assert emu.is_running("gamma")  # the jail itself is left as it is
    assert (show(invoke, "gamma")["status"], show(invoke, "gamma")["adopted"]) == ("registered", False)

    # ---- destroy, remove-tenant --destroy-jail --------------------------------------------------------
    ok(invoke("destroy-agent", "acme", "--yes"))
    assert not (emu.jails_dir / "acme").exists() and show(invoke, "acme")["status"] == "registered"
    ok(invoke("remove-tenant", "beta", "--destroy-jail", "--yes"))
    assert not (emu.jails_dir / "beta").exists()
    code, out, _ = invoke("list-tenants", "--status", "removed", "--json")
    assert code == 0 and [t["tenant_id"] for t in json.loads(out)["data"]] == ["beta"]
    assert sorted(p.name for p in emu.jails_dir.iterdir()) == ["gamma", "zeta"]  # the operator's, untouched
    assert os.path.isdir(emu.jail_root("zeta"))
