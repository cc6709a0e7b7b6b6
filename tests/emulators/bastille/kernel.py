"""The emulated FreeBSD kernel's side of jails: jail(8) parameters, sysctl(8) and RACCT/RCTL (stdlib only).

Written from FreeBSD's sources (sys/kern/kern_jail.c, lib/libjail/jail.c, usr.sbin/jls/jls.c,
sys/kern/kern_rctl.c, usr.bin/rctl/rctl.c); nothing is copied.  Shared by bin/jls, bin/rctl,
bin/sysctl and bastille_cli (jail -c, ``bastille limits``, start, stop).

The emulated host: FreeBSD 14.3 GENERIC (options RACCT and RCTL built in), kern.securelevel -1,
not itself jailed.  ``BASTILLE_EMU_RACCT`` picks its RACCT state:

| value | host |
|---|---|
| ``1`` (default) | ``kern.racct.enable=1`` in loader.conf: rctl works |
| ``0`` | GENERIC without the tunable: ``kern.racct.enable: 0``; every rctl call fails with ENOSYS |
| ``absent`` | a kernel without ``options RACCT``: the sysctl is an unknown oid |
| ``no-rctl`` | ``options RACCT`` without ``options RCTL``: enabled, yet the rctl syscalls are ENOSYS stubs |

The mode may also be written to ``${bastille_prefix}/.emulator/racct`` (for callers that pass no
environment through, like colibri's CLI).  ``BASTILLE_EMU_RCTL_REFUSE=res,...``: the kernel refuses
rules on those resources (EOPNOTSUPP), as
it does for a deny rule on an undeniable resource.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
from pathlib import Path

# ---- jail parameters ---------------------------------------------------------------------------------
# Kernel parameters (security.jail.param.*) of the emulated host: name -> (type, default for a jail
# created by prison0).  Types: int, str, bool (libjail's JP_BOOL), sys (E,jailsys), ip.
# Defaults: kern_jail.c's JAIL_DEFAULT_ALLOW (set_hostname, reserved_ports, unprivileged_proc_debug,
# suser), enforce_statfs 2, children.max 0, sysv* disable, securelevel inherited from the host (-1).
_ALLOW_TRUE = {"allow.set_hostname", "allow.reserved_ports", "allow.unprivileged_proc_debug", "allow.suser"}
_ALLOW = [
    "allow.set_hostname", "allow.sysvipc", "allow.raw_sockets", "allow.chflags", "allow.mount",
    "allow.quotas", "allow.socket_af", "allow.mlock", "allow.reserved_ports", "allow.read_msgbuf",
    "allow.unprivileged_proc_debug", "allow.suser", "allow.nfsd", "allow.extattr", "allow.adjtime",
    "allow.settime", "allow.routing", "allow.unprivileged_parent_tampering", "allow.setaudit",
    "allow.vmm", "allow.mount.devfs", "allow.mount.fdescfs", "allow.mount.nullfs", "allow.mount.procfs",
    "allow.mount.tmpfs", "allow.mount.linprocfs", "allow.mount.linsysfs",
]  # fmt: skip
KERNEL_PARAMS: dict[str, tuple[str, object]] = {
    "jid": ("int", 0), "name": ("str", ""), "path": ("str", "/"), "parent": ("int", 0),
    "host.hostname": ("str", ""), "host.domainname": ("str", ""), "host.hostuuid": ("str", ""),
    "host.hostid": ("int", 0), "host": ("sys", "new"), "osrelease": ("str", "14.3-RELEASE"),
    "osreldate": ("int", 1403000), "securelevel": ("int", -1), "devfs_ruleset": ("int", 0),
    "children.max": ("int", 0), "children.cur": ("int", 0), "enforce_statfs": ("int", 2),
    "persist": ("bool", False), "dying": ("bool", False), "cpuset.id": ("int", 0), "vnet": ("sys", "inherit"),
    "ip4": ("sys", "inherit"), "ip4.addr": ("ip", ""), "ip4.saddrsel": ("bool", True),
    "ip6": ("sys", "inherit"), "ip6.addr": ("ip", ""), "ip6.saddrsel": ("bool", True),
    "sysvmsg": ("sys", "disable"), "sysvsem": ("sys", "disable"), "sysvshm": ("sys", "disable"),
    "meta": ("str", ""), "env": ("str", ""), "zfs.mount_snapshot": ("int", 0),
    **{a: ("bool", a in _ALLOW_TRUE) for a in _ALLOW},
}  # fmt: skip
# jail(8)'s own pseudo-parameters (usr.sbin/jail/config.c intparams): accepted in jail.conf, never
# passed to the kernel, so jls does not know them.
PSEUDO_PARAMS = frozenset(
    [
        "allow.dying",
        "command",
        "depend",
        "exec.clean",
        "exec.consolelog",
        "exec.created",
        "exec.fib",
        "exec.jail_user",
        "exec.poststart",
        "exec.poststop",
        "exec.prepare",
        "exec.prestart",
        "exec.prestop",
        "exec.release",
        "exec.start",
        "exec.stop",
        "exec.system_jail_user",
        "exec.system_user",
        "exec.timeout",
        "interface",
        "ip_hostname",
        "mount",
        "mount.devfs",
        "mount.fdescfs",
        "mount.procfs",
        "mount.fstab",
        "stop.timeout",
        "vnet.interface",
        "zfs.dataset",
    ]
)
_SYS = ("disable", "new", "inherit")


class JailParamError(Exception):
    """jail(8)/libjail's jail_errmsg for a parameter it cannot set."""


def _bool_of(name: str, value: str | None) -> bool:
    if value is None:
        return True
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    if re.fullmatch(r"[+-]?\d+", value.strip()):
        return int(value) != 0
    raise JailParamError(f'{name}: unknown boolean value "{value}"')


def live_params(conf: dict[str, str | None], host_securelevel: int = -1) -> dict[str, object]:
    """The kernel's values for a jail created from jail.conf parameters ``conf`` (jail -c); raises
    JailParamError like jail(8) would ("unknown parameter: X", bad values)."""
    live: dict[str, object] = {k: v for k, (_, v) in KERNEL_PARAMS.items()}
    for name, value in conf.items():
        if name in PSEUDO_PARAMS:
            continue
        key, negate = name, False
        if name not in KERNEL_PARAMS:
            head, _, tail = name.rpartition(".")
            base = f"{head}.{tail[2:]}" if head else tail[2:]
            if tail.startswith("no") and KERNEL_PARAMS.get(base, ("",))[0] == "bool":
                key, negate = base, True
            else:
                raise JailParamError(f"unknown parameter: {name}")
        kind = KERNEL_PARAMS[key][0]
        if kind == "bool":
            if negate and value is not None:
                raise JailParamError(f"{name}: boolean parameter takes no value")  # jail(8) config.c
            live[key] = (not _bool_of(name, value)) if negate else _bool_of(name, value)
        elif kind == "sys":
            v = (value or "new").strip()
            if v in _SYS:
                live[key] = v
            elif re.fullmatch(r"\d+", v) and int(v) < 3:
                live[key] = _SYS[int(v)]
            else:
                raise JailParamError(f'{name}: unknown jailsys value "{value}"')
        elif kind == "int":
            if value is None or not re.fullmatch(r"[+-]?\d+", value.strip()):
                raise JailParamError(f'{name}: unknown integer value "{value}"')
            live[key] = int(value)
        else:
            live[key] = "" if value is None else value
    # kern_jail.c: a jail's securelevel is never below its parent's
    live["securelevel"] = max(int(live["securelevel"]), host_securelevel)  # type: ignore[call-overload]
    # allow.mount.* are only effective with allow.mount, but the kernel keeps and reports each bit
    return live


def export(kind: str, value: object) -> str:
    """libjail's jailparam_export: booleans as true/false, jailsys as disable/new/inherit."""
    if kind == "bool":
        return "true" if value else "false"
    return str(value)


# ---- sysctl ------------------------------------------------------------------------------------------
def racct_mode() -> str:
    """BASTILLE_EMU_RACCT, else the emulated host's ``${prefix}/.emulator/racct`` file, else ``1``."""
    if os.environ.get("BASTILLE_EMU_RACCT"):
        return os.environ["BASTILLE_EMU_RACCT"]
    import state as S  # the same directory; imported late (state does not need this module)

    layout = S.layout_from_env()
    with contextlib.suppress(OSError):
        if layout is not None:
            return (layout.emudir / "racct").read_text().strip() or "1"
    return "1"


def sysctl_value(name: str) -> str | None:
    """A read-only oid of the emulated host, or None (unknown oid)."""
    values = {
        "kern.securelevel": "-1",
        "security.jail.jailed": "0",
        "kern.ostype": "FreeBSD",
        "kern.osrelease": "14.3-RELEASE",
        "hw.ncpu": str(os.cpu_count() or 1),
    }
    mode = racct_mode()
    if mode != "absent":
        values["kern.racct.enable"] = "0" if mode == "0" else "1"
    return values.get(name)


TUNABLES = frozenset({"kern.racct.enable"})

# ---- RCTL --------------------------------------------------------------------------------------------
SUBJECTS = ("process", "user", "loginclass", "jail")
RESOURCES = [
    "cputime",
    "datasize",
    "stacksize",
    "coredumpsize",
    "memoryuse",
    "memorylocked",
    "maxproc",
    "openfiles",
    "vmemoryuse",
    "pseudoterminals",
    "swapuse",
    "nthr",
    "msgqqueued",
    "msgqsize",
    "nmsgq",
    "nsem",
    "nsemop",
    "nshm",
    "shmsize",
    "wallclock",
    "pcpu",
    "readbps",
    "writebps",
    "readiops",
    "writeiops",
]
ACTIONS = [
    "sighup",
    "sigint",
    "sigquit",
    "sigill",
    "sigtrap",
    "sigabrt",
    "sigemt",
    "sigfpe",
    "sigkill",
    "sigbus",
    "sigsegv",
    "sigsys",
    "sigpipe",
    "sigalrm",
    "sigterm",
    "sigurg",
    "sigstop",
    "sigtstp",
    "sigchld",
    "sigttin",
    "sigttou",
    "sigio",
    "sigxcpu",
    "sigxfsz",
    "sigvtalrm",
    "sigprof",
    "sigwinch",
    "siginfo",
    "sigusr1",
    "sigusr2",
    "sigthr",
    "deny",
    "log",
    "devctl",
    "throttle",
]
# sys/kern/kern_racct.c racct_types: which resources can be denied, decay, are sloppy.
_NOT_DENIABLE = {"cputime", "memoryuse", "wallclock", "pcpu", "readbps", "writebps", "readiops", "writeiops"}
_DECAYING = {"pcpu", "readbps", "writebps", "readiops", "writeiops"}
_SLOPPY = {"cputime", "wallclock", "pcpu", "readbps", "writebps", "readiops", "writeiops"}
_SUFFIX = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4, "p": 5, "e": 6}


class RctlError(Exception):
    def __init__(self, err: int) -> None:
        super().__init__(os.strerror(err))
        self.errno = err


def expand_number(text: str) -> int | None:
    """libutil expand_number(3): digits with an optional k/m/g/t/p/e suffix (powers of 1024)."""
    m = re.fullmatch(r"(\d+)([kmgtpeKMGTPE]?)", text)
    if not m:
        return None
    n = int(m.group(1)) << (10 * _SUFFIX[m.group(2).lower()])
    return n if n < 1 << 64 else None


def humanize(num: int) -> str:
    """humanize_number(buf, 6, num, "", HN_AUTOSCALE, HN_DECIMAL | HN_NOSPACE), as rctl -h prints."""
    if num < 100000:  # fits in 5 characters unscaled
        return str(num)
    units = "KMGTPE"
    scale = 0
    value = float(num)
    while value >= 999.5 and scale < len(units):  # keep at most 3 digits (+ suffix) in 5 chars
        value /= 1024
        scale += 1
    if value < 9.95:
        return f"{value:.1f}{units[scale - 1]}"
    return f"{round(value)}{units[scale - 1]}"


def _state_file(prefix_state: Path) -> Path:
    return prefix_state / "rctl.json"


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


def load_rules(prefix_state: Path) -> list[dict]:
    """The kernel's rule list; rules do not survive a reboot of the (test) host."""
    try:
        data = json.loads(_state_file(prefix_state).read_text())
    except (OSError, ValueError):
        return []
    return list(data.get("rules", [])) if data.get("boot") == _boot_id() else []


def _save(prefix_state: Path, rules: list[dict]) -> None:
    prefix_state.mkdir(parents=True, exist_ok=True)
    tmp = _state_file(prefix_state).with_suffix(".tmp")
    tmp.write_text(json.dumps({"boot": _boot_id(), "rules": rules}))
    tmp.replace(_state_file(prefix_state))


def _syscall_ok() -> None:
    if racct_mode() != "1":
        raise RctlError(errno.ENOSYS)


def parse_rule(text: str) -> dict:
    """kern_rctl.c rctl_string_to_rule: 'subject:id:resource:action=amount/per', parts optional."""
    rest: str | None = text

    def strsep(delims: str) -> str | None:
        nonlocal rest
        if rest is None:
            return None
        for i, ch in enumerate(rest):
            if ch in delims:
                token, rest = rest[:i], rest[i + 1 :]
                return token
        token, rest = rest, None
        return token

    subject, sid, resource = strsep(":"), strsep(":"), strsep(":")
    action, amount = strsep("=/"), strsep("/")
    per = rest
    rule = {"subject": subject or None, "id": sid or None, "resource": resource or None,
            "action": action or None, "amount": None, "per": per or None}  # fmt: skip
    if rule["subject"] is not None and rule["subject"] not in SUBJECTS:
        raise RctlError(errno.EINVAL)
    if rule["id"] is not None and rule["subject"] is None:
        raise RctlError(errno.EINVAL)
    if rule["resource"] is not None and rule["resource"] not in RESOURCES:
        raise RctlError(errno.EINVAL)
    if rule["action"] is not None and rule["action"] not in ACTIONS:
        raise RctlError(errno.EINVAL)
    if amount:
        if not re.fullmatch(r"[+-]?\d+", amount) or abs(int(amount)) >= 1 << 63:
            raise RctlError(errno.EINVAL)
        rule["amount"] = int(amount)
        if rule["resource"] == "pcpu" and rule["amount"] > (2**63 - 1) // 1000000:
            raise RctlError(errno.ERANGE)
    if rule["per"] is not None and rule["per"] not in SUBJECTS:
        raise RctlError(errno.EINVAL)
    return rule


def _matches(rule: dict, flt: dict) -> bool:
    return all(flt[k] is None or flt[k] == rule[k] for k in ("subject", "id", "resource", "action", "amount", "per"))


def rule_text(rule: dict) -> str:
    """kern_rctl.c rctl_rule_to_sbuf: '/per' only when it differs from the subject type."""
    out = f"{rule['subject']}:{rule['id'] or ''}:{rule['resource']}:{rule['action']}={rule['amount']}"
    return out + (f"/{rule['per']}" if rule["per"] != rule["subject"] else "")


def add_rule(prefix_state: Path, text: str) -> None:
    _syscall_ok()
    rule = parse_rule(text)
    if any(rule[k] is None for k in ("subject", "id", "resource", "action", "amount")):
        raise RctlError(errno.EINVAL)  # rctl_rule_fully_specified
    if rule["per"] is None:
        rule["per"] = rule["subject"]  # sys_rctl_add_rule: an undefined per is the subject's type
    if rule["subject"] == "process" and not (rule["id"] or "").isdigit():
        raise RctlError(errno.EINVAL)
    refused = {r for r in os.environ.get("BASTILLE_EMU_RCTL_REFUSE", "").split(",") if r}
    res = rule["resource"]
    if rule["action"] == "deny" and res in _NOT_DENIABLE and res not in ("memoryuse", "pcpu"):
        raise RctlError(errno.EOPNOTSUPP)
    if rule["action"] == "throttle" and (res not in _DECAYING or res == "pcpu"):
        raise RctlError(errno.EOPNOTSUPP)
    if rule["per"] == "process" and res in _SLOPPY:
        raise RctlError(errno.EOPNOTSUPP)
    if res in refused:
        raise RctlError(errno.EOPNOTSUPP)
    rules = load_rules(prefix_state)
    key = ("subject", "id", "resource", "action", "per")
    if rule["action"] == "deny":  # "for the deny rules, remove ones differing only by amount"
        rules = [r for r in rules if any(r[k] != rule[k] for k in key)]
    else:
        rules = [r for r in rules if r != rule]
    rules.append(rule)
    _save(prefix_state, rules)


def remove_rules(prefix_state: Path, text: str) -> None:
    _syscall_ok()
    flt = parse_rule(text)
    rules = load_rules(prefix_state)
    kept = [r for r in rules if not _matches(r, flt)]
    if len(kept) == len(rules):
        raise RctlError(errno.ESRCH)
    _save(prefix_state, kept)


def get_rules(prefix_state: Path, text: str) -> list[str]:
    _syscall_ok()
    flt = parse_rule(text)
    return [rule_text(r) for r in load_rules(prefix_state) if _matches(r, flt)]


def get_usage(prefix_state: Path, text: str) -> list[str]:
    """rctl -u: the emulator accounts nothing, every resource reads 0."""
    _syscall_ok()
    flt = parse_rule(text)
    if flt["subject"] is None or flt["id"] is None:
        raise RctlError(errno.EINVAL)
    return [f"{r}=0" for r in RESOURCES if r not in _SLOPPY or flt["subject"] != "process"]
