"""A sandbox jail's processes as the host's process table has them (never the jail's own ps)."""

from pathlib import Path


def in_jail(host_pids: list[int], proc: Path = Path("/proc")) -> list[tuple[int, str]]:
    """(pid as the jail sees it, command line) of each of ``host_pids`` still there: the pid is
    the last of ``NSpid`` in its status (proc(5): the pid in the innermost pid namespace)."""
    found = []
    for pid in host_pids:
        try:
            status = (proc / str(pid) / "status").read_text()
            cmdline = (proc / str(pid) / "cmdline").read_bytes()
        except OSError:
            continue  # gone meanwhile
        ns = [ln.split()[1:] for ln in status.splitlines() if ln.startswith("NSpid:")]
        inner = int(ns[0][-1]) if ns and ns[0] else pid
        found.append((inner, cmdline.replace(b"\0", b" ").decode("utf-8", "replace").strip()))
    return found
