"""Host-side reads of files a jail or a tenant can plant: never hang, follow, or swallow."""

import os
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from colibri.adapters import jailfs
from colibri.adapters.jail import read_jail_passwd
from colibri.adapters.localhome import LocalHome
from colibri.errors import JailError
from tests.conftest import require_root

PASSWD = "root:*:0:0::/root:/bin/sh\nagent:*:1001:1001::/home/agent:/bin/sh\n"


def _finishes(fn: Callable[..., Any], *args: object, seconds: float = 5.0) -> BaseException | None:
    """Run fn(*args) in a thread; fail the test if it is still blocked after ``seconds``."""
    box: list[BaseException | None] = []

    def target() -> None:
        try:
            fn(*args)
            box.append(None)
        except BaseException as exc:  # handed to the test
            box.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"{fn} blocked for {seconds} s"
    return box[0]


@pytest.fixture(name="root")
def root_fixture(tmp_path: Path) -> Path:
    (tmp_path / "etc").mkdir()
    return tmp_path


def test_a_regular_passwd_is_read(root: Path) -> None:
    (root / "etc" / "passwd").write_text(PASSWD)
    assert read_jail_passwd(root, "agent") == (1001, 1001)
    assert jailfs.read_regular(root, "etc/passwd", len(PASSWD)) == PASSWD.encode()


def _plant(root: Path, kind: str, tmp_path: Path) -> None:
    target = root / "etc" / "passwd"
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "symlink":
        (tmp_path / "host-file").write_text(PASSWD)
        target.symlink_to(tmp_path / "host-file")
    elif kind == "device":
        os.mknod(target, 0o644 | stat.S_IFCHR, os.makedev(1, 3))  # /dev/null (we are root)
    elif kind == "huge":
        target.write_text(PASSWD + "#" * (2 << 20))
    elif kind == "directory":
        target.mkdir()
    elif kind == "etc-symlink":
        (root / "etc").rmdir()
        (tmp_path / "host-etc").mkdir()
        (tmp_path / "host-etc" / "passwd").write_text(PASSWD)
        (root / "etc").symlink_to(tmp_path / "host-etc")


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("fifo", "not a regular file"),
        ("symlink", "not a regular file"),
        ("device", "not a regular file"),
        ("huge", "more than the 1048576 allowed"),
        ("directory", "not a regular file"),
        ("etc-symlink", "is a symlink or not a directory"),
    ],
)
def test_a_hostile_passwd_fails_fast(root: Path, tmp_path: Path, kind: str, reason: str) -> None:
    if kind == "device":
        require_root("mknod of a device node")
    _plant(root, kind, tmp_path)
    error = _finishes(read_jail_passwd, root, "agent")
    assert isinstance(error, JailError), error
    assert reason in str(error) and "/etc/passwd" in str(error)


def test_read_regular_refuses_what_read_file_cuts(root: Path) -> None:
    (root / "etc" / "log").write_bytes(b"x" * 100)
    assert jailfs.read_file(root, "etc/log", limit=10) == b"x" * 10
    with pytest.raises(JailError, match="100 bytes, more than the 10 allowed"):
        jailfs.read_regular(root, "etc/log", 10)
    assert jailfs.read_regular(root, "etc/log", 100) == b"x" * 100
    os.mkfifo(root / "etc" / "fifo")
    error = _finishes(jailfs.read_file, root, "etc/fifo", 10)
    assert isinstance(error, JailError) and "not a regular file" in str(error)


def test_read_tail_gives_the_end_of_a_log(root: Path) -> None:
    (root / "etc" / "log").write_bytes(b"old\n" * 1000 + b"last line\n")
    assert jailfs.read_tail(root, "etc/log", 10) == b"last line\n"
    assert jailfs.read_tail(root, "etc/log", 1 << 20).startswith(b"old\n")
    os.mkfifo(root / "etc" / "fifo")
    error = _finishes(jailfs.read_tail, root, "etc/fifo", 10)
    assert isinstance(error, JailError) and "not a regular file" in str(error)


def test_a_fifo_at_the_local_mothers_log_does_not_hang_spawn_local(tmp_path: Path) -> None:
    """spawn-local opened .colibri/mother.log (a directory the home's owner writes) for writing,
    which blocks on a FIFO until someone reads it."""
    home = tmp_path / "home"
    (home / ".colibri").mkdir(parents=True)
    os.mkfifo(home / ".colibri" / "mother.log")
    error = _finishes(LocalHome(home, python="/bin/true").start, tmp_path / "mother.py", tmp_path / "identity")
    assert isinstance(error, JailError) and "mother.log" in str(error) and "not a regular file" in str(error)
    assert not (home / ".colibri" / "mother.pid").exists()


@pytest.mark.parametrize("uid", ["-1", "4294967295", str(2**40)])
def test_an_impossible_uid_is_refused(root: Path, uid: str) -> None:
    """-1 and 2**32-1 mean 'leave the owner as is' to chown; 2**40 overflowed (a traceback)."""
    (root / "etc" / "passwd").write_text(f"agent:*:{uid}:1001::/home/agent:/bin/sh\n")
    with pytest.raises(JailError, match="impossible uid/gid"):
        read_jail_passwd(root, "agent")


@pytest.mark.parametrize("kind", ["fifo", "device", "symlink"])
def test_write_file_replaces_a_planted_fifo_device_or_symlink(root: Path, tmp_path: Path, kind: str) -> None:
    target = root / "etc" / "identity.json"
    victim = tmp_path / "victim"
    victim.write_text("precious")
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "device":
        require_root("mknod of a device node")
        os.mknod(target, 0o644 | stat.S_IFCHR, os.makedev(1, 3))
    else:
        target.symlink_to(victim)
    assert _finishes(jailfs.write_file, root, "etc/identity.json", b"{}") is None
    assert target.read_bytes() == b"{}" and not target.is_symlink() and victim.read_text() == "precious"


def test_read_since_gives_what_a_log_gained_its_end_at_most(tmp_path: Path) -> None:
    """review9 F2: a growing log is read from the offset, or its end, never its stale head."""
    log = tmp_path / "var/log/m.log"
    log.parent.mkdir(parents=True)
    log.write_bytes(b"a" * 100 + b"new\n")
    assert jailfs.read_since(tmp_path, "var/log/m.log", 100, 1000) == (104, b"new\n")
    assert jailfs.read_since(tmp_path, "var/log/m.log", 0, 4) == (104, b"new\n")  # cut: its end
    assert jailfs.read_since(tmp_path, "var/log/m.log", 500, 1000) == (104, b"a" * 100 + b"new\n")  # rotated
    assert jailfs.read_since(tmp_path, "var/log/m.log", 0, 0) == (104, b"")
