"""The argv of every bastille / jls / rctl / sysctl call the bastille backend's hardening makes, and
the parsers that read their answers back (pure functions: no emulator here)."""

import pytest

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
