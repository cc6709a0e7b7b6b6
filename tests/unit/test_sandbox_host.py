"""The sandbox backend on a host that lacks what it needs: one clear JailError, never a silent
downgrade to an unconfined jail (fakes of /proc/sys and /sys/fs/cgroup at the module seams)."""

from pathlib import Path

import pytest

from colibri.adapters.sandbox import cgroups, userns
from colibri.errors import JailError


def test_a_kernel_without_user_namespaces_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    knob = tmp_path / "max_user_namespaces"
    monkeypatch.setattr(userns, "MAX_USER_NAMESPACES", knob)
    with pytest.raises(JailError, match="needs user namespaces, and this kernel has none"):
        userns.require_user_namespaces()
    knob.write_text("0\n")
    with pytest.raises(JailError, match="set max_user_namespaces above 0"):
        userns.require_user_namespaces()
    knob.write_text("15000\n")
    userns.require_user_namespaces()


def test_missing_cgroup_controllers_are_named(tmp_path: Path) -> None:
    with pytest.raises(JailError, match="missing: memory, pids, cpu"):
        cgroups.hierarchy("t", root=tmp_path)
    for controller in ("memory", "cpu"):
        (tmp_path / controller).mkdir()
        (tmp_path / controller / "cgroup.procs").write_text("")
    with pytest.raises(JailError, match=r"missing: pids$"):
        cgroups.hierarchy("t", root=tmp_path)


def test_v2_is_chosen_when_the_unified_hierarchy_has_the_controllers(tmp_path: Path) -> None:
    unified = tmp_path / "unified"
    unified.mkdir()
    (unified / "cgroup.controllers").write_text("cpu io\n")  # an empty-ish v2 beside v1: not enough
    for controller in cgroups.CONTROLLERS:
        (tmp_path / controller).mkdir()
        (tmp_path / controller / "cgroup.procs").write_text("")
    assert cgroups.hierarchy("t", root=tmp_path).version == 1
    (unified / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    chosen = cgroups.hierarchy("t", root=tmp_path)
    assert (chosen.version, chosen.groups) == (2, (unified / "colibri" / "t",))


def test_ids_outside_the_namespace_are_refused() -> None:
    assert userns.to_host(1_000_000_000, 1001, 1001) == (1_000_001_001, 1_000_001_001)
    with pytest.raises(JailError, match="outside the jail's user namespace"):
        userns.to_host(1_000_000_000, 65536, 0)


def _fake_v2(tmp_path: Path) -> Path:
    (tmp_path / "cgroup.controllers").write_text("cpu memory pids\n")
    (tmp_path / "cgroup.subtree_control").write_text("")
    return tmp_path


def test_v2_limits_are_written_enabled_and_read_back(tmp_path: Path) -> None:
    root = _fake_v2(tmp_path)
    (root / "colibri").mkdir()
    (root / "colibri" / "cgroup.subtree_control").write_text("")
    chosen = cgroups.hierarchy("t", root=root)
    cgroups.create(chosen, cgroups.Limits(memory_mib=64, max_processes=40, cpu_percent=50))
    group = root / "colibri" / "t"
    assert (group / "memory.max").read_text() == f"{64 * 1024 * 1024}\n"
    assert (group / "pids.max").read_text() == "40\n"
    assert (group / "cpu.max").read_text() == "50000 100000\n"
    assert (root / "cgroup.subtree_control").read_text().split() == ["+memory", "+pids", "+cpu"]
    assert chosen.procs() == [str(group / "cgroup.procs")]


def test_v1_limits_are_written_per_controller(tmp_path: Path) -> None:
    for controller in cgroups.CONTROLLERS:
        (tmp_path / controller).mkdir()
        (tmp_path / controller / "cgroup.procs").write_text("")
    chosen = cgroups.hierarchy("t", root=tmp_path)
    cgroups.create(chosen, cgroups.Limits(memory_mib=128, max_processes=16, cpu_percent=200))
    assert (tmp_path / "memory/colibri/t/memory.limit_in_bytes").read_text() == f"{128 * 1024 * 1024}\n"
    assert (tmp_path / "pids/colibri/t/pids.max").read_text() == "16\n"
    assert (tmp_path / "cpu/colibri/t/cpu.cfs_quota_us").read_text() == "200000\n"


def test_a_limit_that_cannot_be_set_is_an_error_not_a_skip(tmp_path: Path) -> None:
    for controller in cgroups.CONTROLLERS:
        (tmp_path / controller).mkdir()
        (tmp_path / controller / "cgroup.procs").write_text("")
    (tmp_path / "pids/colibri/t/pids.max").mkdir(parents=True)  # cannot be written as a file
    chosen = cgroups.hierarchy("t", root=tmp_path)
    with pytest.raises(JailError, match=r"cannot set .*pids.max to 16"):
        cgroups.create(chosen, cgroups.Limits(memory_mib=128, max_processes=16, cpu_percent=100))


def test_a_jails_bwrap_is_known_by_start_time_and_host_uid_not_argv() -> None:
    """Review: is_ours trusted the command line, which jail root can rewrite (and another tenant
    forge); a pid is the jail's bwrap only with its recorded start time and a uid of its block."""
    import os
    import subprocess

    from colibri.adapters.jail import UID_BLOCK
    from colibri.adapters.sandbox import bwrap

    base = 1_000_000_000 + 7 * UID_BLOCK
    me, started = os.getpid(), bwrap.start_time(os.getpid())
    assert started is not None
    assert not bwrap.is_ours(me, started, base), "a process of host uid 0 passed for a jail's"
    if os.geteuid() != 0:
        return
    child = subprocess.Popen(["sleep", "30"], user=base + 1001, group=base)
    try:
        child_started = bwrap.start_time(child.pid)
        assert child_started is not None
        assert bwrap.is_ours(child.pid, child_started, base)
        assert not bwrap.is_ours(child.pid, child_started + 1, base), "a reused pid passed"
        assert not bwrap.is_ours(child.pid, child_started, base + UID_BLOCK), "another tenant's process passed"
    finally:
        child.kill()
        child.wait()
    assert not bwrap.is_ours(child.pid, child_started, base)


def test_a_block_overlapping_the_hosts_subordinate_ids_is_refused(tmp_path: Path) -> None:
    """A host user whose /etc/subuid (or subgid) range covers a tenant's block could map the
    tenant's ids into a user namespace of its own and own the jail's files."""
    from colibri.adapters.jail import UID_BLOCK, JailIds
    from colibri.adapters.sandbox.backend import Sandbox

    base = 10 * UID_BLOCK
    subuid, subgid = tmp_path / "subuid", tmp_path / "subgid"
    files = (subuid, subgid)
    userns.require_no_subid_overlap(base, files)  # missing files: no ranges
    subuid.write_text(f"# comment\nalice:{base - UID_BLOCK}:{UID_BLOCK}\nbob:{base + UID_BLOCK}:10\nbad:x:y\n")
    subgid.write_text(f"alice:{base - UID_BLOCK}:{UID_BLOCK}\n")
    userns.require_no_subid_overlap(base, files)  # adjacent ranges do not overlap
    subgid.write_text(f"alice:{base - UID_BLOCK}:{UID_BLOCK}\ncarol\x1b[2J:{base + UID_BLOCK - 1}:1\n")
    with pytest.raises(JailError, match=r"subgid line 2 \(carol\?\[2J:\d+:1\)") as caught:
        userns.require_no_subid_overlap(base, files)
    assert "\x1b" not in str(caught.value)
    subgid.write_text("")
    subuid.write_text(f"dave:{base + 100}:1\n")
    sandbox = Sandbox(tmp_path / "jails", tmp_path / "templates", "agent", runner=None, subid_files=files)  # type: ignore[arg-type]
    with pytest.raises(JailError, match=r"subuid line 1 \(dave:"):
        sandbox.create("t1", ip=None, template=None, ids=JailIds(base))
    assert not (tmp_path / "jails").exists(), "the refused jail was built anyway"
    home = tmp_path / "jails" / "t1"  # a jail made before the range was added: start refuses it
    (home / "root").mkdir(parents=True)
    (home / "colibri.json").write_text(f'{{"created_by": "colibri", "uid_base": {base}}}')
    with pytest.raises(JailError, match=r"subuid line 1 \(dave:"):
        sandbox.start("t1")


def test_a_subid_file_that_is_not_a_regular_file_is_an_error(tmp_path: Path) -> None:
    import os

    fifo = tmp_path / "subuid"
    os.mkfifo(fifo)
    with pytest.raises(JailError, match="not a regular file"):
        userns.require_no_subid_overlap(65536, (fifo,))
