"""Issue 8 items 2 and 3 on the bastille backend: the real adapter against the bastille 1.4.4 emulator
(real processes; its jls, rctl and sysctl answer as FreeBSD's do, see tests/emulators/bastille/kernel.py).

* the agent user of a new jail has the uid/gid colibri allocated to the tenant (not 1001);
* every agent-jail parameter is what the kernel reports after each start (jls), not only in jail.conf;
* rctl limits (memory, processes, open files, CPU) are in force after create and after each start;
* a host without RACCT, or a kernel that refuses a rule, is a clear BastilleError (exit 11), never a skip.
"""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from colibri.adapters.bastille.backend import Bastille
from colibri.adapters.bastille.hardening import Limits
from colibri.adapters.jail import JailIds, JailState, parse_passwd
from colibri.adapters.runner import ShRunner
from colibri.errors import BastilleError
from colibri.resources import shipped
from tests.conftest import Invoke
from tests.contract.conftest import warm_package_cache
from tests.emulators.bastille.fixtures import BastilleEmulator, bastille_emulator_fixture  # noqa: F401

pytestmark = pytest.mark.integration

IP = "10.17.89.7"
IDS = JailIds(1_000_065_536)  # the second block of the default tenant_uid_base
# What a careful operator wants of an agent jail, as jls(8) reports it once the jail runs.
LIVE = {
    "enforce_statfs": "2",
    "devfs_ruleset": "4",
    "securelevel": "2",
    "children.max": "0",
    "allow.raw_sockets": "false",
    "allow.mount": "false",
    "allow.mount.devfs": "false",
    "allow.chflags": "false",
    "allow.set_hostname": "false",
    "allow.socket_af": "false",
    "allow.mlock": "false",
    "allow.read_msgbuf": "false",
    "allow.unprivileged_proc_debug": "false",
    "sysvmsg": "disable",
    "sysvsem": "disable",
    "sysvshm": "disable",
}
RULES = {"memoryuse": 1024 * 1024 * 1024, "maxproc": 256, "openfiles": 1024, "pcpu": 100}


def make(emu: BastilleEmulator, tmp_path: Path, limits: Limits | None = None, **emu_env: str) -> Bastille:
    repo = warm_package_cache(emu.prefix / "releases" / emu.release)
    runner = ShRunner({"PATH": emu.env["PATH"], "LANG": "C.UTF-8", **emu_env})
    return Bastille(
        runner,
        bastille="bastille",
        prefix=emu.prefix,
        release=emu.release,
        config=emu.conf_path,
        locks_dir=tmp_path / "locks",
        intents_dir=tmp_path / "intents",
        templates_source=shipped("jails"),
        limits=limits,
        pkg_repo=repo,
    )


def tool(emu: BastilleEmulator, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), env={**emu.env, **env}, capture_output=True, text=True, timeout=60)


def live_params(emu: BastilleEmulator, name: str) -> dict[str, str]:
    r = tool(emu, "jls", "-j", name, "-n", *LIVE)
    assert r.returncode == 0, r.stderr
    out: dict[str, str] = {}
    for word in r.stdout.split():  # -n: name=value, booleans as name / noname
        key, eq, value = word.partition("=")
        if eq:
            out[key] = value
        elif key in LIVE:
            out[key] = "true"
        else:
            head, _, tail = key.rpartition(".")
            out[f"{head}.{tail[2:]}" if head else tail[2:]] = "false"
    return out


def kernel_rules(emu: BastilleEmulator, name: str) -> dict[str, str]:
    r = tool(emu, "rctl", f"jail:{name}")
    assert r.returncode == 0, r.stderr
    return {ln.split(":")[2]: ln.split("=", 1)[1] for ln in r.stdout.splitlines()}


def bastille_calls(emu: BastilleEmulator, verb: str) -> list[list[str]]:
    log = emu.prefix / ".emulator" / "log"
    argvs = [json.loads(line)["argv"] for line in log.read_text().splitlines()]
    return [a for a in argvs if a and a[0] == verb]


# ---- item 2: the agent's uid/gid ------------------------------------------------------------------------
def test_the_agent_user_has_the_tenants_allocated_ids(bastille_emulator: BastilleEmulator, tmp_path: Path) -> None:
    jails = make(bastille_emulator, tmp_path)
    jails.create("acme", ip=IP, template=None, ids=IDS)
    root = bastille_emulator.jail_root("acme")
    assert parse_passwd((root / "etc/passwd").read_text(), "agent") == (IDS.agent_uid, IDS.agent_gid)
    assert f"agent:*:{IDS.agent_gid}:" in (root / "etc/group").read_text()
    assert jails.user_ids("acme", "agent") == (1_000_066_537, 1_000_066_537)
    assert (root / "home/agent").stat().st_uid == IDS.agent_uid
    # a second tenant's jail gets its own ids
    jails.create("bolt", ip="10.17.89.8", template=None, ids=JailIds(1_000_131_072))
    assert jails.user_ids("bolt", "agent") == (1_000_132_073, 1_000_132_073)


def test_ids_another_user_of_the_jail_holds_are_refused(bastille_emulator: BastilleEmulator, tmp_path: Path) -> None:
    jails = make(bastille_emulator, tmp_path)
    release = bastille_emulator.prefix / "releases" / bastille_emulator.release / "etc"
    for name, line in (
        ("passwd", f"squatter:*:{IDS.agent_uid}:{IDS.agent_gid}::/nonexistent:/usr/sbin/nologin\n"),
        ("master.passwd", f"squatter:*:{IDS.agent_uid}:{IDS.agent_gid}::0:0::/nonexistent:/usr/sbin/nologin\n"),
    ):
        with (release / name).open("a") as handle:  # a release (or a template) that brings such a user
            handle.write(line)
    with pytest.raises(BastilleError, match=f"user 'squatter' already has id {IDS.agent_uid}") as caught:
        jails.create("acme", ip=IP, template=None, ids=IDS)
    assert caught.value.exit_code == 11
    assert jails.info("acme").state is JailState.ABSENT and not (bastille_emulator.jails_dir / "acme").exists()


def test_a_block_in_the_hosts_account_range_is_refused(bastille_emulator: BastilleEmulator, tmp_path: Path) -> None:
    """A jailed process of uid N is reachable by the host's account N (signals, ptrace): the agent
    must never be on a uid the host gives its own users (before: a 64533 block made the agent 65534)."""
    jails = make(bastille_emulator, tmp_path)
    with pytest.raises(BastilleError, match="is not a block of unprivileged host ids") as caught:
        jails.create("acme", ip=IP, template=None, ids=JailIds(65534 - 1001))
    assert caught.value.exit_code == 11
    assert jails.info("acme").state is JailState.ABSENT and not (bastille_emulator.jails_dir / "acme").exists()


def test_an_agent_user_left_with_other_ids_is_refused(bastille_emulator: BastilleEmulator, tmp_path: Path) -> None:
    """The template refuses an existing agent user of other ids, and colibri checks the passwd after."""
    jails = make(bastille_emulator, tmp_path)
    jails.create("acme", ip=IP, template=None, ids=IDS)
    r = bastille_emulator.run("template", "acme", "colibri/agent")  # again, as a re-run would
    assert r.returncode == 0, r.stderr
    (bastille_emulator.jail_root("acme") / "usr/local/etc/colibri/agent-ids").write_text("uid=1002\ngid=1002\n")
    r = bastille_emulator.run("template", "acme", "colibri/agent")
    assert r.returncode == 1 and "exists with uid:gid 1000066537:1000066537, not 1002:1002; refusing" in r.stdout


# ---- item 3: jail parameters --------------------------------------------------------------------------
def test_every_agent_jail_parameter_is_live_after_each_start(
    bastille_emulator: BastilleEmulator, tmp_path: Path
) -> None:
    jails = make(bastille_emulator, tmp_path)
    jails.create("acme", ip=IP, template=None, ids=IDS)
    assert live_params(bastille_emulator, "acme") == LIVE
    conf = (bastille_emulator.jails_dir / "acme" / "jail.conf").read_text()
    assert "  exec.clean;" in conf and "  children.max = 0;" in conf
    jails.stop("acme")
    jails.start("acme")
    assert live_params(bastille_emulator, "acme") == LIVE
    # colibri/agent sets them with bastille's own CONFIG hook: colibri had nothing left to set
    assert bastille_calls(bastille_emulator, "config") == []
    assert ["template", "acme", "colibri/agent"] in bastille_calls(bastille_emulator, "template")


def test_a_template_without_the_parameters_is_made_good(bastille_emulator: BastilleEmulator, tmp_path: Path) -> None:
    """An operator's own template (--template) that sets no parameter: colibri sets each with
    `bastille config`, restarts, and checks them live."""
    bare = bastille_emulator.prefix / "templates" / "local" / "bare"
    shutil.copytree(shipped("jails") / "agent", bare)
    shutil.copy(shipped("jails") / "agent-jail-bootstrap.sh", bare / "agent-jail-bootstrap.sh")
    lines = (bare / "Bastillefile").read_text().splitlines()
    (bare / "Bastillefile").write_text("".join(ln + "\n" for ln in lines if not ln.startswith(("CONFIG", "RESTART"))))
    jails = make(bastille_emulator, tmp_path)
    jails.create("acme", ip=IP, template="local/bare", ids=IDS)
    assert live_params(bastille_emulator, "acme") == LIVE
    config = bastille_calls(bastille_emulator, "config")
    assert ["config", "acme", "set", "allow.raw_sockets", "0"] in config
    assert ["config", "acme", "set", "enforce_statfs", "2"] not in config  # bastille's default was right


def test_a_jail_conf_weakened_by_hand_is_caught_at_start(bastille_emulator: BastilleEmulator, tmp_path: Path) -> None:
    jails = make(bastille_emulator, tmp_path)
    jails.create("acme", ip=IP, template=None, ids=IDS)
    jails.stop("acme")
    r = bastille_emulator.run("config", "acme", "set", "allow.raw_sockets", "1")
    assert r.returncode == 0
    with pytest.raises(
        BastilleError, match=r"without its agent-jail parameters: allow.raw_sockets=true \(want false\)"
    ):
        jails.start("acme")
    assert not bastille_emulator.is_running("acme")  # not left running unhardened


def test_an_unknown_parameter_makes_the_start_fail(bastille_emulator: BastilleEmulator, tmp_path: Path) -> None:
    jails = make(bastille_emulator, tmp_path)
    jails.create("acme", ip=IP, template=None, ids=IDS)
    jails.stop("acme")
    path = bastille_emulator.jails_dir / "acme" / "jail.conf"
    path.write_text(path.read_text().replace("  sysvshm = disable;", "  allow.mount.nosuchfs = 0;"))
    with pytest.raises(BastilleError, match=r"unknown parameter: allow\.mount\.nosuchfs"):
        jails.start("acme")


# ---- item 3: rctl limits ------------------------------------------------------------------------------
def test_limits_are_in_force_after_create_and_after_each_start(
    bastille_emulator: BastilleEmulator, tmp_path: Path
) -> None:
    jails = make(bastille_emulator, tmp_path)
    jails.create("acme", ip=IP, template=None, ids=IDS)
    assert kernel_rules(bastille_emulator, "acme") == {k: str(v) for k, v in RULES.items()}
    rctl_conf = (bastille_emulator.jails_dir / "acme" / "rctl.conf").read_text().splitlines()
    assert rctl_conf == [f"jail:acme:{k}:deny={v}/jail" for k, v in RULES.items()]
    jails.stop("acme")
    assert kernel_rules(bastille_emulator, "acme") == {}  # bastille stop clears them
    added = len(bastille_calls(bastille_emulator, "limits"))
    jails.start("acme")
    assert kernel_rules(bastille_emulator, "acme") == {k: str(v) for k, v in RULES.items()}
    # bastille start re-added them from rctl.conf: colibri checked and changed nothing
    assert len(bastille_calls(bastille_emulator, "limits")) == added


def test_limits_dropped_behind_bastilles_back_are_restored(bastille_emulator: BastilleEmulator, tmp_path: Path) -> None:
    jails = make(bastille_emulator, tmp_path)
    jails.create("acme", ip=IP, template=None, ids=IDS)
    jails.stop("acme")
    (bastille_emulator.jails_dir / "acme" / "rctl.conf").unlink()
    jails.start("acme")
    assert kernel_rules(bastille_emulator, "acme") == {k: str(v) for k, v in RULES.items()}


def test_changed_limit_settings_replace_the_old_rules(bastille_emulator: BastilleEmulator, tmp_path: Path) -> None:
    """bastille's own update of a rule leaves rctl.conf stale (its sed never matches): colibri
    removes and re-adds, so the next start does not bring the old value back."""
    make(bastille_emulator, tmp_path).create("acme", ip=IP, template=None, ids=IDS)
    bigger = make(bastille_emulator, tmp_path, Limits(memory_mib=2048, max_processes=512))
    bigger.stop("acme")
    bigger.start("acme")
    want = {**RULES, "memoryuse": 2 * 1024**3, "maxproc": 512}
    assert kernel_rules(bastille_emulator, "acme") == {k: str(v) for k, v in want.items()}
    bigger.stop("acme")
    bigger.start("acme")
    assert kernel_rules(bastille_emulator, "acme") == {k: str(v) for k, v in want.items()}


@pytest.mark.parametrize(
    ("racct", "said"),
    [
        ("0", "RACCT is disabled on this host (kern.racct.enable=0)"),
        ("absent", "this kernel has no RACCT/RCTL (sysctl kern.racct.enable: sysctl: unknown oid"),
    ],
)
def test_a_host_without_racct_is_a_clear_error(
    bastille_emulator: BastilleEmulator, tmp_path: Path, racct: str, said: str
) -> None:
    jails = make(bastille_emulator, tmp_path, BASTILLE_EMU_RACCT=racct)
    with pytest.raises(BastilleError) as caught:
        jails.create("acme", ip=IP, template=None, ids=IDS)
    assert said in str(caught.value) and "add kern.racct.enable=1 to /boot/loader.conf and reboot" in str(caught.value)
    assert caught.value.exit_code == 11
    assert bastille_calls(bastille_emulator, "create") == [] and not (bastille_emulator.jails_dir / "acme").exists()


def test_a_host_without_racct_through_the_cli(
    bastille_emulator: BastilleEmulator, invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = bastille_emulator
    warm_package_cache(emu.prefix / "releases" / emu.release, monkeypatch)
    for key, value in {
        "COLIBRI_JAIL_BACKEND": "bastille",
        "COLIBRI_BASTILLE_PREFIX": str(emu.prefix),
        "COLIBRI_BASTILLE_CONFIG": str(emu.conf_path),
        "COLIBRI_BASTILLE_RELEASE": emu.release,
        "PATH": emu.env["PATH"],
    }.items():
        monkeypatch.setenv(key, value)
    (emu.prefix / ".emulator" / "racct").write_text("0\n")  # the emulated host boots without the tunable
    assert invoke("register-tenant", "acme", "--collection", "")[0] == 0
    code, _, err = invoke("spawn-agent", "acme")
    assert code == 11
    assert err == (
        "colibri: agent jails need resource limits, and RACCT is disabled on this host (kern.racct.enable=0): "
        "add kern.racct.enable=1 to /boot/loader.conf and reboot\n"
    )


def test_a_limit_the_kernel_refuses_is_an_error(bastille_emulator: BastilleEmulator, tmp_path: Path) -> None:
    jails = make(bastille_emulator, tmp_path, BASTILLE_EMU_RCTL_REFUSE="pcpu")
    with pytest.raises(BastilleError) as caught:
        jails.create("acme", ip=IP, template=None, ids=IDS)
    text = str(caught.value)
    assert "rctl limits of jail acme are not in force" in text and "pcpu=none/100 (want 100)" in text
    assert "failed to add rule 'jail:acme:pcpu:deny=100/jail': Operation not supported" in text
    assert not (bastille_emulator.jails_dir / "acme").exists()  # the half-made jail is destroyed


def test_a_kernel_with_racct_but_no_rctl_is_an_error(bastille_emulator: BastilleEmulator, tmp_path: Path) -> None:
    jails = make(bastille_emulator, tmp_path, BASTILLE_EMU_RACCT="no-rctl")
    with pytest.raises(BastilleError, match=r"rctl cannot list jail acme's limits: .*Function not implemented"):
        jails.create("acme", ip=IP, template=None, ids=IDS)
    assert not (bastille_emulator.jails_dir / "acme").exists()


def test_a_start_after_racct_went_away_is_refused(bastille_emulator: BastilleEmulator, tmp_path: Path) -> None:
    """The host rebooted without the tunable: the agent jail is not left running without limits."""
    jails = make(bastille_emulator, tmp_path)
    jails.create("acme", ip=IP, template=None, ids=IDS)
    jails.stop("acme")
    (bastille_emulator.prefix / ".emulator" / "racct").write_text("0\n")
    with pytest.raises(BastilleError, match=r"kern\.racct\.enable=0.*add kern\.racct\.enable=1 to /boot/loader\.conf"):
        jails.start("acme")
    assert not bastille_emulator.is_running("acme")
