"""The argv of every bastille, jls, rctl and sysctl call the bastille backend makes (kept apart from
running them, so a unit test pins each one).  Names reach here checked (``_exact_target``)."""

from collections.abc import Sequence


def config_set(name: str, param: str, value: str | None) -> list[str]:
    """``bastille config NAME set PARAM [VALUE]``: one jail(8) parameter into the jail's jail.conf
    (no value: a flag, ``  PARAM;``)."""
    return ["config", name, "set", param, *([value] if value is not None else [])]


def limits_add(name: str, resource: str, amount: int) -> list[str]:
    """``bastille limits NAME add RESOURCE AMOUNT``: rctl.conf + ``rctl -a jail:NAME:RES:deny=N/jail``."""
    return ["limits", name, "add", resource, str(amount)]


def limits_remove(name: str, resource: str) -> list[str]:
    return ["limits", name, "remove", resource]


def jls_params(name: str, params: Sequence[str]) -> list[str]:
    """``jls -j NAME -h P...``: a header line with the names, then the live values."""
    return ["jls", "-j", name, "-h", *params]


def rctl_rules(name: str) -> list[str]:
    """``rctl jail:NAME``: the kernel's rules for the jail, exact amounts (no ``-h`` rounding)."""
    return ["rctl", f"jail:{name}"]


def racct_enabled() -> list[str]:
    return ["sysctl", "-n", "kern.racct.enable"]


def mounts_nullfs() -> list[str]:
    """``mount -p -t nullfs``: the host's live nullfs mounts, one fstab(5)-format line each."""
    return ["mount", "-p", "-t", "nullfs"]


# ---- bastille(8)'s subcommands (the words after the program: the backend puts its bastille_path first) ----
def version() -> list[str]:
    """``bastille --version`` (1.4.x prints it on stderr)."""
    return ["--version"]


def list_jails() -> list[str]:
    """``bastille list jails``: one jail name a line."""
    return ["list", "jails"]


def create(name: str, release: str, ip: str) -> list[str]:
    """``bastille create NAME RELEASE IP``: a thin jail (``-T`` would be thick)."""
    return ["create", name, release, ip]


def start(name: str) -> list[str]:
    return ["start", name]


def stop(name: str) -> list[str]:
    return ["stop", name]


def template(name: str, template_name: str) -> list[str]:
    """``bastille template NAME TEMPLATE``, never with ``--arg`` (bastille eval's them)."""
    return ["template", name, template_name]


def destroy(name: str) -> list[str]:
    """``bastille destroy -afy NAME``: force (a running jail is stopped), auto-confirm."""
    return ["destroy", "-afy", name]


def mount(name: str, host_path: str, jail_path: str, options: str) -> list[str]:
    """``bastille mount NAME HOST JAIL nullfs OPTIONS 0 0`` (mount.sh's fstab-style arguments)."""
    return ["mount", name, host_path, jail_path, "nullfs", options, "0", "0"]


def umount(name: str, jail_path: str) -> list[str]:
    return ["umount", name, jail_path]


# ---- FreeBSD's own tools ----------------------------------------------------------------------
def jls_name(name: str) -> list[str]:
    """``jls -j NAME name``: the jail's name when it runs (exit 1 when it does not: usr.sbin/jls)."""
    return ["jls", "-j", name, "name"]


def ps_jail(name: str) -> list[str]:
    """``ps -ax -J NAME -o pid= -o command=``: the jail's processes from the host's table (ps(1):
    -J takes a jail's name or jid)."""
    return ["ps", "-ax", "-J", name, "-o", "pid=", "-o", "command="]


def umount_host(path: str) -> list[str]:
    """``umount -f PATH``: a host mount by the path the kernel recorded (``mount -p``'s 2nd field)."""
    return ["umount", "-f", path]


def jexec(name: str, user: str, env: Sequence[str], command: Sequence[str]) -> list[str]:
    """``jexec -l -U USER NAME [/usr/bin/env K=V...] CMD...``: jexec(8) keeps the command's exit
    status (``bastille cmd`` collapses it to 0/1); ``-l`` a clean login environment, ``-U`` the
    jail's own user.  ``env`` is ``K=V`` strings, given only to env(1) inside the jail."""
    return ["jexec", "-l", "-U", user, name, *(["/usr/bin/env", *env] if env else []), *command]


def service(service_name: str, verb: str) -> list[str]:
    """``/usr/sbin/service NAME VERB`` inside the jail (rc.subr answers start/stop/status)."""
    return ["/usr/sbin/service", service_name, verb]
