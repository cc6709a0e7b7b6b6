"""The argv of every bastille / jls / jexec / mount / rctl / sysctl call the bastille backend makes,
and the parsers that read their answers back (pure functions: no emulator here)."""

import ast
from pathlib import Path

import pytest

import colibri.adapters.bastille
from colibri.adapters.bastille import argv
from colibri.adapters.bastille.hardening import (
    Limits,
    conf_mismatches,
    id_conflict,
    ids_file,
    jail_conf_params,
    live_mismatches,
    parse_jls,
    parse_rctl,
    parse_rctl_conf,
)
from colibri.adapters.jail import JailIds


def test_argv_of_every_new_call() -> None:
    assert argv.config_set("acme", "allow.raw_sockets", "0") == ["config", "acme", "set", "allow.raw_sockets", "0"]
    assert argv.config_set("acme", "exec.clean", None) == ["config", "acme", "set", "exec.clean"]
    assert argv.limits_add("acme", "memoryuse", 1073741824) == ["limits", "acme", "add", "memoryuse", "1073741824"]
    assert argv.limits_remove("acme", "pcpu") == ["limits", "acme", "remove", "pcpu"]
    assert argv.jls_params("acme", ["securelevel", "children.max"]) == [
        "jls", "-j", "acme", "-h", "securelevel", "children.max"]  # fmt: skip
    assert argv.rctl_rules("acme") == ["rctl", "jail:acme"]
    assert argv.racct_enabled() == ["sysctl", "-n", "kern.racct.enable"]


def test_argv_of_every_lifecycle_call() -> None:
    """bastille 1.4.x's own words (after the program, which the backend puts first)."""
    assert argv.version() == ["--version"]
    assert argv.list_jails() == ["list", "jails"]
    assert argv.create("acme", "14.2-RELEASE", "10.17.89.5") == ["create", "acme", "14.2-RELEASE", "10.17.89.5"]
    assert argv.start("acme") == ["start", "acme"]
    assert argv.stop("acme") == ["stop", "acme"]
    assert argv.template("acme", "colibri/agent") == ["template", "acme", "colibri/agent"]
    assert argv.destroy("acme") == ["destroy", "-afy", "acme"]
    assert argv.mount("acme", "/var/run/colibri/agents/acme", "/var/run/colibri", "rw") == [
        "mount", "acme", "/var/run/colibri/agents/acme", "/var/run/colibri", "nullfs", "rw", "0", "0"]  # fmt: skip
    assert argv.umount("acme", "/var/run/colibri") == ["umount", "acme", "/var/run/colibri"]
    assert argv.mounts_nullfs() == ["mount", "-p", "-t", "nullfs"]
    assert argv.jls_name("acme") == ["jls", "-j", "acme", "name"]
    assert argv.service("colibri_mother", "status") == ["/usr/sbin/service", "colibri_mother", "status"]


def test_jexec_puts_the_environment_inside_the_jail_only() -> None:
    assert argv.jexec("acme", "root", [], ["/bin/ls", "-l"]) == ["jexec", "-l", "-U", "root", "acme", "/bin/ls", "-l"]
    assert argv.jexec("acme", "agent", ["A=1", "B=two words"], ["id"]) == [
        "jexec", "-l", "-U", "agent", "acme", "/usr/bin/env", "A=1", "B=two words", "id"]  # fmt: skip


_RUNNERS = {"_run", "_bastille_run", "_host_tool"}
_BUILDERS = {"argv", "bastille_argv"}


def _built_by_argv(node: ast.expr) -> bool:
    """An argv from a builder of argv.py: ``argv.f(...)``, or ``[prefix, *argv.f(...)]``."""
    if isinstance(node, ast.Starred):
        node = node.value
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        return isinstance(node.func.value, ast.Name) and node.func.value.id in _BUILDERS
    if isinstance(node, ast.List):
        return any(isinstance(e, ast.Starred) and _built_by_argv(e) for e in node.elts)
    return False


def test_every_call_the_backend_makes_takes_its_argv_from_argv_py() -> None:
    """So the pins above cover every command: no argv is spelled where it is run."""
    package = Path(colibri.adapters.bastille.__file__).parent
    calls = 0
    for path in sorted(package.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            if node.func.attr not in _RUNNERS or not isinstance(node.func.value, ast.Name):
                continue
            if node.func.value.id != "self":
                continue
            assert node.args, f"{path.name}:{node.lineno}: a call without its argv"
            first = node.args[0]
            passed_on = [first, *(e.value for e in getattr(first, "elts", []) if isinstance(e, ast.Starred))]
            if any(isinstance(e, ast.Name) and e.id in ("command", "args") for e in passed_on):
                continue  # the runners' own bodies pass on what they were given
            assert _built_by_argv(first), f"{path.name}:{node.lineno}: argv not built in argv.py"
            calls += 1
    assert calls >= 20  # every call site was seen (the walk did not silently miss the files)


def test_limits_in_kernel_units() -> None:
    assert Limits(memory_mib=512, max_processes=64, open_files=256, cpu_percent=50).rules() == {
        "memoryuse": 536870912, "maxproc": 64, "openfiles": 256, "pcpu": 50}  # fmt: skip


def test_jail_conf_parsing_and_what_is_missing() -> None:
    text = "acme {\n  enforce_statfs = 2;\n  exec.clean;\n  exec.start = '/bin/sh /etc/rc';\n  securelevel = 1;\n}\n"
    params = jail_conf_params(text)
    assert params == {"enforce_statfs": "2", "exec.clean": None, "exec.start": "/bin/sh /etc/rc", "securelevel": "1"}
    wrong = conf_mismatches(params)
    assert "securelevel=1" in wrong and "children.max=(not set)" in wrong and "enforce_statfs=2" not in wrong
    assert "exec.clean (not set)" in conf_mismatches({})


def test_jls_answers() -> None:
    assert parse_jls("a b\n1 false\n", ["a", "b"]) == {"a": "1", "b": "false"}
    assert parse_jls("a b\n1\n", ["a", "b"]) is None
    assert parse_jls("b a\n1 2\n", ["a", "b"]) is None
    good = {"securelevel": "3", "enforce_statfs": "2", "devfs_ruleset": "4", "children.max": "0",
            "sysvmsg": "disable", "sysvsem": "disable", "sysvshm": "disable"}  # fmt: skip
    good.update({p: "false" for p in ("allow.raw_sockets", "allow.mount", "allow.mount.devfs", "allow.chflags",
                 "allow.set_hostname", "allow.socket_af", "allow.mlock", "allow.read_msgbuf",
                 "allow.unprivileged_proc_debug")})  # fmt: skip
    assert live_mismatches(good) == []  # a host at securelevel 3 makes the jail 3: still >= 2
    assert live_mismatches({**good, "securelevel": "1"}) == ["securelevel=1 (want >= 2)"]
    assert live_mismatches({**good, "allow.raw_sockets": "true"}) == ["allow.raw_sockets=true (want false)"]


def test_rctl_answers() -> None:
    out = (
        "jail:acme:memoryuse:deny=1073741824\njail:acme:pcpu:deny=100\njail:acme:maxproc:log=10\n"
        "jail:acmex:maxproc:deny=1\n"
    )
    assert parse_rctl(out, "acme") == {"memoryuse": 1073741824, "pcpu": 100}
    conf = "jail:acme:maxproc:deny=64/jail\njail:acme:maxproc:log=64/jail\njail:other:pcpu:deny=1/jail\n"
    assert parse_rctl_conf(conf, "acme") == {"maxproc": "64"}


@pytest.mark.parametrize(
    ("uid", "gid", "said"),
    [
        (65534, 5000, "user 'nobody' already has id 65534"),
        (5000, 0, "group 'wheel' already has id 0"),
        (1001, 1001, None),  # the agent's own entries are no conflict
        (5000, 5000, None),
    ],
)
def test_id_conflicts(uid: int, gid: int, said: str | None) -> None:
    passwd = (
        "root:*:0:0::/root:/bin/sh\nnobody:*:65534:65534::/nonexistent:/usr/sbin/nologin\n"
        "agent:*:1001:1001::/home/agent:/bin/sh\n"
    )
    group = "wheel:*:0:root\nagent:*:1001:\n"
    assert id_conflict(passwd, group, "agent", uid, gid) == said


def test_the_ids_file_holds_digits_only() -> None:
    assert ids_file(JailIds(1_000_000_000)) == b"uid=1000001001\ngid=1000001001\n"
