"""What every JailBackend must do (see tests/contract/conftest.py for the backends)."""

import os
from pathlib import Path

import pytest

from colibri.adapters.jail import UID_BLOCK, JailBackend, JailIds, JailState, Mount
from colibri.errors import JailError, JailExists, JailNotFound, TemplateNotFound

IP = "10.17.89.20"
IDS = JailIds(1_000_000_000 + 9_000 * UID_BLOCK)


def _running(backend: JailBackend, name: str) -> None:
    if backend.info(name).state is not JailState.RUNNING:
        backend.start(name)
    assert backend.info(name).state is JailState.RUNNING


def test_create_gives_a_managed_jail_with_its_own_agent_user(backend: JailBackend) -> None:
    info = backend.create("alpha", ip=IP, template="colibri/agent", ids=IDS)
    assert info.name == "alpha"
    assert info.managed
    assert info.state in (JailState.STOPPED, JailState.RUNNING)
    assert info.root == backend.root("alpha")
    uid, gid = backend.user_ids("alpha", "agent")
    assert uid > 0 and gid > 0
    assert "alpha" in [j.name for j in backend.list_jails()]
    with pytest.raises(JailError, match="user nobody-here is missing"):
        backend.user_ids("alpha", "nobody-here")


def test_the_agent_user_is_on_the_tenants_ids(backend: JailBackend) -> None:
    backend.create("alpha", ip=IP, template="colibri/agent", ids=IDS)
    assert backend.user_ids("alpha", "agent") == (IDS.agent_uid, IDS.agent_gid)
    home = (backend.root("alpha") / "home/agent").stat()
    assert (home.st_uid, home.st_gid) == (IDS.agent_uid, IDS.agent_gid)
    if backend.name == "sandbox":  # a FreeBSD jail's root is uid 0, confined by jail(2) instead
        assert backend.user_ids("alpha", "root") != (0, 0)
    with pytest.raises(JailError, match="is not a block of unprivileged host ids"):
        backend.create("beta", ip="10.17.89.21", template="colibri/agent", ids=JailIds(0))
    assert backend.info("beta").state is JailState.ABSENT


def test_create_twice_and_unknown_template(backend: JailBackend) -> None:
    backend.create("alpha", ip=IP, template="colibri/agent", ids=IDS)
    with pytest.raises(JailExists):
        backend.create("alpha", ip=IP, template="colibri/agent", ids=IDS)
    with pytest.raises(TemplateNotFound, match="template not found: colibri/nope"):
        backend.create("beta", ip="10.17.89.21", template="colibri/nope", ids=JailIds(IDS.base + UID_BLOCK))
    assert backend.info("beta").state is JailState.ABSENT


def test_start_stop_restart_are_verified_and_idempotent(backend: JailBackend) -> None:
    backend.create("alpha", ip=IP, template="colibri/agent", ids=IDS)
    _running(backend, "alpha")
    assert backend.start("alpha").state is JailState.RUNNING  # already running: still fine
    assert backend.stop("alpha").state is JailState.STOPPED
    assert backend.stop("alpha").state is JailState.STOPPED
    assert backend.restart("alpha").state is JailState.RUNNING


def test_exec_keeps_exit_status_stdin_and_runs_as_the_jail_user(backend: JailBackend) -> None:
    backend.create("alpha", ip=IP, template="colibri/agent", ids=IDS)
    _running(backend, "alpha")
    result = backend.exec("alpha", ["/bin/sh", "-c", "cat; exit 3"], stdin=b"hello")
    assert (result.exit_code, result.stdout) == (3, b"hello")
    # What the agent makes in the jail belongs, on the host, to the ids user_ids reports.
    result = backend.exec("alpha", ["/bin/sh", "-c", "touch /home/agent/mine && id -u"], user="agent")
    assert result.exit_code == 0 and int(result.out.strip()) > 0
    made = (backend.root("alpha") / "home/agent/mine").stat()
    assert (made.st_uid, made.st_gid) == backend.user_ids("alpha", "agent")
    passwd = backend.exec("alpha", ["/bin/cat", "/etc/passwd"]).out
    assert passwd == (backend.root("alpha") / "etc/passwd").read_text()  # the jail's own passwd


def test_copy_in_never_follows_a_symlink_planted_in_the_jail(backend: JailBackend, tmp_path: Path) -> None:
    backend.create("alpha", ip=IP, template="colibri/agent", ids=IDS)
    source = tmp_path / "note.txt"
    source.write_text("inside\n")
    backend.copy_in("alpha", source, "/usr/local/etc/colibri/note.txt", mode=0o640)
    copied = backend.root("alpha") / "usr/local/etc/colibri/note.txt"
    assert copied.read_text() == "inside\n"
    assert copied.stat().st_mode & 0o777 == 0o640
    outside = tmp_path / "outside"
    outside.mkdir()
    (backend.root("alpha") / "usr/local/evil").symlink_to(outside)
    with pytest.raises(JailError, match="symlink"):
        backend.copy_in("alpha", source, "/usr/local/evil/note.txt")
    assert list(outside.iterdir()) == []


def test_mount_a_host_directory_read_write(backend: JailBackend, tmp_path: Path) -> None:
    backend.create("alpha", ip=IP, template="colibri/agent", ids=IDS)
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "from-host").write_text("x")
    os.chown(shared, *backend.user_ids("alpha", "root"))  # writable by the jail's root, as the host sees it
    backend.mount("alpha", Mount(shared, "/var/run/colibri", read_only=False))
    backend.mount("alpha", Mount(shared, "/var/run/colibri", read_only=False))  # idempotent
    if backend.info("alpha").state is JailState.RUNNING:
        backend.stop("alpha")
    backend.start("alpha")
    seen = backend.exec("alpha", ["/bin/sh", "-c", "ls /var/run/colibri; touch /var/run/colibri/from-jail"])
    assert seen.exit_code == 0
    assert "from-host" in seen.out
    assert (shared / "from-jail").exists()


def test_a_mount_is_checked_live_and_umount_takes_it_out(backend: JailBackend, tmp_path: Path) -> None:
    backend.create("alpha", ip=IP, template="colibri/agent", ids=IDS)
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "from-host").write_text("x")
    mount = Mount(shared, "/var/run/colibri", read_only=False)
    if backend.info("alpha").state is JailState.RUNNING:
        backend.stop("alpha")
    assert backend.umount("alpha", "/var/run/colibri") is False  # nothing there yet
    backend.mount("alpha", mount)  # stopped: configured, not live
    assert backend.is_mounted("alpha", mount) is False
    backend.start("alpha")
    assert backend.is_mounted("alpha", mount) is True
    assert not backend.is_mounted("alpha", Mount(tmp_path, "/var/run/colibri"))  # another source is not it
    assert backend.umount("alpha", "/var/run/colibri") is True  # running: gone now
    assert backend.is_mounted("alpha", mount) is False
    assert "from-host" not in backend.exec("alpha", ["/bin/sh", "-c", "ls /var/run/colibri"]).out
    backend.restart("alpha")  # and from the next start on
    assert backend.is_mounted("alpha", mount) is False
    backend.mount("alpha", mount)  # running: live at once
    assert backend.is_mounted("alpha", mount) is True
    backend.stop("alpha")
    assert backend.umount("alpha", "/var/run/colibri") is True  # stopped: from the next start on
    backend.start("alpha")
    assert backend.is_mounted("alpha", mount) is False
    assert backend.umount("alpha", "/var/run/colibri") is False


def test_destroy_removes_only_colibris_jails(backend: JailBackend) -> None:
    backend.create("alpha", ip=IP, template="colibri/agent", ids=IDS)
    _running(backend, "alpha")
    backend.destroy("alpha")
    assert backend.info("alpha").state is JailState.ABSENT
    assert "alpha" not in [j.name for j in backend.list_jails()]
    with pytest.raises(JailNotFound):
        backend.destroy("alpha")


def test_a_jail_colibri_did_not_create_is_never_destroyed(backend: JailBackend, foreign_jail: str) -> None:
    info = backend.info(foreign_jail)
    assert info.state is not JailState.ABSENT
    assert not info.managed
    with pytest.raises(JailError, match="not created by colibri"):
        backend.destroy(foreign_jail)
    assert backend.info(foreign_jail).state is not JailState.ABSENT


@pytest.fixture(name="foreign_jail")
def foreign_jail_fixture(backend: JailBackend, request: pytest.FixtureRequest) -> str:
    """A jail made without colibri: by bastille itself, or by hand in the sandbox's jails dir."""
    if backend.name == "bastille":
        emulator = request.getfixturevalue("bastille_emulator")
        emulator.run("create", "handmade", emulator.release, "10.17.89.99")
    elif backend.name == "fake":
        from tests.fakes.jail import FakeJails

        assert isinstance(backend, FakeJails)
        backend.add_foreign("handmade")
    else:
        root = backend.root("handmade")
        (root / "etc").mkdir(parents=True)
        (root / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\n")
        os.chmod(root.parent, 0o700)
    return "handmade"
