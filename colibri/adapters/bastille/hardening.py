"""What an agent jail must be on FreeBSD, and how to read back that it is (pure functions).

The jail(8) parameters colibri sets on every agent jail (through ``bastille config``) and checks
live with jls(8) after each start; the rctl(8) limits it sets through ``bastille limits`` and
checks with ``rctl jail:NAME``; the file that tells the template the agent's uid/gid.
"""

import re
from dataclasses import dataclass

from colibri.adapters.jail import JailIds

# (parameter, value written to jail.conf, value jls(8) must report once the jail runs).
# Bastille 1.4.4's jail.conf already has enforce_statfs=2, devfs_ruleset=4, securelevel=2 and
# exec.clean; they are listed so that a jail.conf changed by hand is caught.  Only parameters every
# FreeBSD 14/15 GENERIC kernel knows: an unknown one makes jail -c fail.  allow.mount.* other than
# devfs exist only with their file system's module loaded, and are inert without allow.mount.
JAIL_PARAMS: tuple[tuple[str, str, str], ...] = (
    ("enforce_statfs", "2", "2"),  # see only its own mounts
    ("devfs_ruleset", "4", "4"),  # devfsrules_jail: no disks, no /dev/mem, no bpf
    ("securelevel", "2", "2"),  # live: at least 2 (a host at 3 makes the jail 3)
    ("children.max", "0", "0"),  # no jails inside the jail
    ("allow.raw_sockets", "0", "false"),  # no ping, no packet forging
    ("allow.mount", "0", "false"),
    ("allow.mount.devfs", "0", "false"),
    ("allow.chflags", "0", "false"),
    ("allow.set_hostname", "0", "false"),
    ("allow.socket_af", "0", "false"),  # only IPv4/IPv6/local/route sockets
    ("allow.mlock", "0", "false"),
    ("allow.read_msgbuf", "0", "false"),  # no dmesg of the host
    ("allow.unprivileged_proc_debug", "0", "false"),
    ("sysvmsg", "disable", "disable"),  # System V IPC off (allow.sysvipc is their deprecated alias)
    ("sysvsem", "disable", "disable"),
    ("sysvshm", "disable", "disable"),
)
FILE_ONLY = (("exec.clean", None),)  # jail(8) pseudo-parameters: in jail.conf only, not in jls
AT_LEAST = frozenset({"securelevel"})


@dataclass(frozen=True)
class Limits:
    """Per-jail rctl(8) deny rules (settings jail_memory_mib, jail_max_processes, jail_open_files,
    jail_cpu_percent)."""

    memory_mib: int = 1024
    max_processes: int = 256
    open_files: int = 1024
    cpu_percent: int = 100

    def rules(self) -> dict[str, int]:
        """resource -> amount, as the kernel reports it (memoryuse in bytes, pcpu in percent)."""
        return {
            "memoryuse": self.memory_mib * 1024 * 1024,
            "maxproc": self.max_processes,
            "openfiles": self.open_files,
            "pcpu": self.cpu_percent,
        }


def jail_conf_params(text: str) -> dict[str, str | None]:
    """The parameters of a Bastille jail.conf stanza (``  name = value;`` / ``  name;``), quotes
    stripped; enough for the one-stanza files bastille writes."""
    params: dict[str, str | None] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line.endswith(";"):
            continue
        name, eq, value = line[:-1].partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        params[name.strip()] = value if eq else None
    return params


def conf_mismatches(params: dict[str, str | None]) -> list[str]:
    """The agent-jail parameters jail.conf lacks or has another value for."""
    wrong = [f"{p}={params.get(p, '(not set)')}" for p, value, _ in JAIL_PARAMS if params.get(p) != value]
    return wrong + [f"{p} (not set)" for p, _ in FILE_ONLY if p not in params]


def parse_jls(out: str, names: list[str]) -> dict[str, str] | None:
    """``jls -h P...`` output: the header must be exactly ``names``; None when it is not."""
    lines = [ln for ln in out.splitlines() if ln.strip()]
    if len(lines) != 2 or lines[0].split() != names:
        return None
    values = lines[1].split()
    return dict(zip(names, values, strict=True)) if len(values) == len(names) else None


def live_mismatches(live: dict[str, str]) -> list[str]:
    wrong = []
    for param, _, expected in JAIL_PARAMS:
        got = live.get(param, "?")
        numeric = bool(re.fullmatch(r"-?\d+", got))
        ok = (numeric and int(got) >= int(expected)) if param in AT_LEAST else got == expected
        if not ok:
            wrong.append(f"{param}={got} (want {'>= ' if param in AT_LEAST else ''}{expected})")
    return wrong


def parse_rctl(out: str, name: str) -> dict[str, int]:
    """``rctl jail:NAME`` output: resource -> amount of its per-jail deny rule (the kernel prints
    ``jail:NAME:RES:deny=N``, ``/per`` only when per differs from the subject)."""
    rules: dict[str, int] = {}
    pattern = re.compile(rf"jail:{re.escape(name)}:([a-z]+):deny=(\d+)")
    for line in out.splitlines():
        match = pattern.fullmatch(line.strip())
        if match:
            rules[match.group(1)] = int(match.group(2))
    return rules


def parse_rctl_conf(text: str, name: str) -> dict[str, str]:
    """Bastille's ``jails/NAME/rctl.conf``: resource -> the amount text of ``jail:NAME:RES:deny=V/jail``."""
    rules: dict[str, str] = {}
    pattern = re.compile(rf"jail:{re.escape(name)}:([a-z]+):deny=([^/\s]+)/jail")
    for line in text.splitlines():
        match = pattern.fullmatch(line.strip())
        if match:
            rules[match.group(1)] = match.group(2)
    return rules


IDS_FILE = "/usr/local/etc/colibri/agent-ids"


def ids_file(ids: JailIds) -> bytes:
    """What agent-jail-bootstrap.sh reads (digits only; it never sources the file)."""
    return f"uid={ids.agent_uid}\ngid={ids.agent_gid}\n".encode()


def id_conflict(passwd: str, group: str, user: str, uid: int, gid: int) -> str | None:
    """A user other than ``user`` holding ``uid``, or a group other than ``user``'s holding ``gid``."""
    for text, wanted, what in ((passwd, uid, "user"), (group, gid, "group")):
        for line in text.splitlines():
            fields = line.split(":")
            if len(fields) >= 3 and fields[0] != user and fields[2] == str(wanted):
                return f"{what} {fields[0][:32]!r} already has id {wanted}"
    return None
