"""Host and process inspection, through psutil: the one place colibri asks the kernel about a
process (is it alive, whose is it, when did it start, its children and command line) and about
the daemon's own use of the host (resident memory, open descriptors, sockets).

A process that is gone (or that we may not look at) is an answer here (``None``, ``False``,
``[]``), never an exception: every caller asks about processes that may die at any moment.
What psutil cannot do (namespaces, mount tables, ``/proc/sys``) stays with the sandbox backend.

The start time is the kernel's own number, clock ticks since boot (Linux: /proc/PID/stat field
22), recovered exactly from psutil's seconds: with the pid it names one process for the life of
the host, and it is the number earlier colibri versions recorded for running jails.
"""

import os
from collections.abc import Callable
from dataclasses import dataclass

import psutil

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_GONE = (psutil.NoSuchProcess, psutil.AccessDenied, ProcessLookupError, PermissionError, ValueError, OSError)


def _process(pid: int) -> psutil.Process | None:
    if pid <= 0:
        return None
    try:
        return psutil.Process(pid)
    except _GONE:
        return None


def start_time(pid: int) -> int | None:
    """``pid``'s start time in clock ticks since boot; None when it is gone."""
    process = _process(pid)
    if process is None:
        return None
    try:
        seconds: float = process.create_time() - psutil.boot_time()
        return round(seconds * _CLOCK_TICKS)
    except _GONE:
        return None


def real_uid(pid: int) -> int | None:
    """``pid``'s real uid; None when it is gone."""
    process = _process(pid)
    try:
        return int(process.uids().real) if process is not None else None
    except _GONE:
        return None


def effective_uid(pid: int) -> int | None:
    """``pid``'s effective uid (the owner of its /proc entry); None when it is gone."""
    process = _process(pid)
    try:
        return int(process.uids().effective) if process is not None else None
    except _GONE:
        return None


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (a zombie has let go of its namespaces)."""
    process = _process(pid)
    try:
        return process is not None and process.status() != psutil.STATUS_ZOMBIE
    except _GONE:
        return False


def exists(pid: int) -> bool:
    """True while the kernel has ``pid``, zombie or not."""
    return _process(pid) is not None


def children(pid: int) -> list[int]:
    """``pid``'s direct children, oldest first (by start time, then pid): the first is the one it
    forked first, whatever orphans were handed to it since (a pid namespace's init adopts them)."""
    process = _process(pid)
    if process is None:
        return []
    try:
        found = process.children()
    except _GONE:
        return []
    ages: list[tuple[float, int]] = []
    for child in found:
        try:
            ages.append((child.create_time(), child.pid))
        except _GONE:
            continue
    return [child_pid for _, child_pid in sorted(ages)]


def first_child(pid: int) -> int | None:
    """The oldest child of ``pid``, None when it has none (or is gone)."""
    found = children(pid)
    return found[0] if found else None


def cmdline(pid: int) -> list[str] | None:
    """``pid``'s command line, None when it is gone or a zombie.  Written by the process itself:
    a hint, never proof of who it is (see ``start_time`` and the uids)."""
    process = _process(pid)
    try:
        return list(process.cmdline()) if process is not None else None
    except (*_GONE, psutil.ZombieProcess):
        return None


@dataclass(frozen=True)
class Usage:
    """What a process holds of the host (None: the kernel would not say)."""

    rss_bytes: int | None
    open_fds: int | None
    connections: int | None
    """sockets it has open, listening or connected, of every family (Unix sockets included)"""


def usage(pid: int | None = None) -> Usage:
    """Resident memory, open descriptors and open sockets of ``pid`` (default: this process), for
    ``colibri daemon status`` and ``/metrics``."""
    process = _process(os.getpid() if pid is None else pid)
    if process is None:
        return Usage(None, None, None)
    return Usage(
        rss_bytes=_ask(lambda: int(process.memory_info().rss)),
        open_fds=_ask(lambda: int(process.num_fds())),
        connections=_ask(lambda: len(process.net_connections(kind="all"))),
    )


def _ask(question: Callable[[], int]) -> int | None:
    try:
        return question()
    except _GONE:
        return None
