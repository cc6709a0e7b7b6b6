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
