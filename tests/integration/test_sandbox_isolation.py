"""What a process in a sandbox jail can and cannot reach (the sandbox backend's promises).

Every escape attempt runs for real in a real bubblewrap jail, as the jail's root and as its agent
user, and must fail.  Two tenants' jails run side by side to try the ways across.
"""

import os
import random
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from colibri.adapters.jail import UID_BLOCK, JailIds
from colibri.adapters.runner import ShRunner
from colibri.adapters.sandbox import cgroups
from colibri.adapters.sandbox.backend import Sandbox
from colibri.adapters.sandbox.cgroups import Limits
from colibri.resources import shipped
from colibri.services.lifecycle.layout import make_socket_dir as _make_socket_dir
from tests.conftest import require

pytestmark = pytest.mark.integration

USERS = ["root", "agent"]
LIMITS = Limits(memory_mib=64, max_processes=40, cpu_percent=50)
CORE_PATTERN = Path("/proc/sys/kernel/core_pattern")


def _bases() -> tuple[int, int]:
    # Random blocks, so that parallel runs (and other colibri test jails) never share one.
    first = random.randrange(1000, 8000)
    return 1_000_000_000 + first * UID_BLOCK, 1_000_000_000 + (first + 1) * UID_BLOCK


@pytest.fixture(name="jails", scope="module")
def jails_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    require(shutil.which("bwrap") is not None, "bubblewrap")
    require(os.geteuid() == 0, "root")
    tmp = tmp_path_factory.mktemp("iso")
    runner = ShRunner({"PATH": os.environ["PATH"]})
    sandbox = Sandbox(tmp / "jails", shipped("jails"), "agent", runner, limits=LIMITS, open_files=256)
    base_a, base_b = _bases()
    for name, base in (("iso", base_a), ("iso2", base_b)):
        sandbox.create(name, ip=None, template="colibri/agent", ids=JailIds(base))
        sandbox.start(name)
        env = sandbox.root(name) / "home/agent/.env"
        env.write_text(f"SECRET=of-{name}\n")
        env.chmod(0o600)
        os.chown(env, *sandbox.user_ids(name, "agent"))
    try:
        yield sandbox
    finally:
        for name in ("iso", "iso2"):
            sandbox.destroy(name)


def sh(jails: Sandbox, script: str, user: str, name: str = "iso", timeout: float = 30) -> tuple[int, str]:
    result = jails.exec(
        name, ["/bin/sh", "-c", "{ " + script + "\n} 2>&1"], user=None if user == "root" else user, timeout=timeout
    )
    return result.exit_code, result.out


SYSCALL = """
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
args = [int(a, 0) for a in sys.argv[2:]]
rc = libc.syscall(int(sys.argv[1]), *args)
print(rc, ctypes.get_errno())
"""


def syscall(jails: Sandbox, user: str, number: int, *args: int) -> tuple[int, int]:
    """Run one raw syscall in the jail (x86_64 numbers); its return value and errno."""
    code, out = sh(jails, f"python3 -c '{SYSCALL}' {number} {' '.join(str(a) for a in args)}", user)
    assert code == 0, out
    rc, err = out.split()[-2:]
    return int(rc), int(err)


def test_root_in_the_jail_has_no_admin_capabilities(jails: Sandbox) -> None:
    caps = jails.exec("iso", ["/bin/sh", "-c", "grep CapEff /proc/self/status"]).out.split()[1]
    assert int(caps, 16) & (1 << 21) == 0  # CAP_SYS_ADMIN
    assert int(caps, 16) & (1 << 16) == 0  # CAP_SYS_MODULE
    status = jails.exec("iso", ["/bin/sh", "-c", "grep -E 'Cap(Bnd|Amb)' /proc/self/status"]).out.split()
    assert int(status[1], 16) == 0xEB  # the bounding set is jail root's six capabilities, no more
    assert int(status[3], 16) == 0
    mounted = jails.exec("iso", ["/bin/sh", "-c", "mount -t tmpfs none /mnt 2>&1; umount /usr/local 2>&1"])
    assert "permission denied" in mounted.out.lower() or mounted.exit_code != 0
    init_caps = jails.exec("iso", ["/bin/sh", "-c", "grep CapEff /proc/1/status /proc/2/status"]).out
    assert "0000003fffffffff" not in init_caps and "000001fffeffffff" not in init_caps


def test_the_jail_sees_its_own_files_and_no_network(jails: Sandbox) -> None:
    passwd = jails.exec("iso", ["/bin/cat", "/etc/passwd"]).out
    assert passwd == (jails.root("iso") / "etc/passwd").read_text()
    links = jails.exec("iso", ["/bin/sh", "-c", "ls /sys/class/net 2>/dev/null || cat /proc/net/dev"]).out
    assert "lo" in links
    assert "eth" not in links and "ens" not in links
    assert jails.exec("iso", ["/bin/sh", "-c", "test -e /root/.pyenv || test -e /work"]).exit_code != 0


@pytest.mark.parametrize("user", USERS)
def test_jail_ids_are_the_tenants_host_block(jails: Sandbox, user: str) -> None:
    code, out = sh(jails, "id -u; cat /proc/self/uid_map", user)
    uid = int(out.split()[0])
    inside, outside, count = (int(x) for x in out.split()[1:4])
    base = jails.user_ids("iso", "root")[0]
    assert (inside, outside, count) == (0, base, UID_BLOCK)
    assert base >= 1_000_000_000
    assert code == 0
    assert uid == (0 if user == "root" else 1001)
    # Every process of the jail, seen from the host, runs as an id of the tenant's block.
    owners = {_owner(p) for p in _jail_pids(jails, "iso")}
    assert owners and all(base <= o < base + UID_BLOCK for o in owners), owners
    # ... and every one of them is under the seccomp filter, with no_new_privs and at most jail
    # root's six capabilities.
    for pid in _jail_pids(jails, "iso"):
        status = dict(ln.split(":\t", 1) for ln in Path(f"/proc/{pid}/status").read_text().splitlines() if ":\t" in ln)
        assert status["Seccomp"].strip() == "2" and status["NoNewPrivs"].strip() == "1", (pid, status["Name"])
        assert int(status["CapEff"], 16) & ~0xEB == 0, (pid, status["Name"])


def _cmd(p: Path) -> str:
    try:
        return p.joinpath("cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _owner(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[2])  # effective
    raise AssertionError(pid)


def _jail_pids(jails: Sandbox, name: str) -> list[int]:
    """Host pids of the jail's processes: those in its pid namespace."""
    init = jails._init_pid(name)
    assert init is not None
    ns = os.readlink(f"/proc/{init}/ns/pid")
    found = []
    for p in Path("/proc").iterdir():
        try:
            if p.name.isdigit() and os.readlink(p / "ns/pid") == ns:
                found.append(int(p.name))
        except OSError:
            continue
    return found


@pytest.mark.parametrize("user", USERS)
def test_core_pattern_and_kernel_knobs_are_out_of_reach(jails: Sandbox, user: str) -> None:
    saved = CORE_PATTERN.read_bytes()
    try:
        target = "|/tmp/own %p"
        sh(jails, f"echo '{target}' > /proc/sys/kernel/core_pattern", user)
        assert CORE_PATTERN.read_bytes() == saved, "the jail changed the host's kernel.core_pattern"
        # Writing a knob's current value back: refused now, and harmless on a host where it was not.
        knobs = ("kernel/hostname", "kernel/panic", "kernel/randomize_va_space", "vm/swappiness")
        for knob in (*knobs, "net/ipv4/ip_forward", "user/max_user_namespaces"):
            current = (Path("/proc/sys") / knob).read_text().strip()
            code, out = sh(jails, f"echo {current} > /proc/sys/{knob}", user)
            assert code != 0, f"{knob} writable in the jail: {out}"
        for path in ("/proc/sysrq-trigger", "/sys/kernel/uevent_helper", "/sys/fs/cgroup/cgroup.procs"):
            code, out = sh(jails, f": > {path}", user)  # opening it for writing is the test
            assert code != 0, f"{path} writable in the jail: {out}"
        assert sh(jails, "ls /sys", user)[0] != 0  # no /sys at all
    finally:
        if CORE_PATTERN.read_bytes() != saved:
            CORE_PATTERN.write_bytes(saved)


@pytest.mark.parametrize("user", USERS)
def test_devices_and_mounts_are_refused(jails: Sandbox, user: str) -> None:
    assert sh(jails, "mknod /tmp/sda b 8 0", user)[0] != 0
    assert sh(jails, "mknod /tmp/mem c 1 1", user)[0] != 0
    for device in ("/dev/sda", "/dev/vda", "/dev/mem", "/dev/kmem", "/dev/port", "/dev/kmsg"):
        assert sh(jails, f"head -c1 {device} >/dev/null", user)[0] != 0, device
    devices = sh(jails, "ls /dev", user)[1].split()
    assert set(devices) <= {"core", "fd", "full", "null", "ptmx", "pts", "random", "shm", "stderr"} | {
        "stdin",
        "stdout",
        "tty",
        "urandom",
        "zero",
    }
    assert sh(jails, "mount -t tmpfs none /tmp", user)[0] != 0
    assert sh(jails, "mount --bind /usr /tmp", user)[0] != 0
    assert sh(jails, "mount -o remount,rw /usr", user)[0] != 0
    assert sh(jails, "touch /usr/owned", user)[0] != 0


# x86_64 syscall numbers
SYS = {
    "init_module": 175,
    "finit_module": 313,
    "delete_module": 176,
    "kexec_load": 246,
    "kexec_file_load": 320,
    "bpf": 321,
    "keyctl": 250,
    "add_key": 248,
    "request_key": 249,
    "unshare": 272,
    "setns": 308,
    "ptrace": 101,
    "perf_event_open": 298,
    "userfaultfd": 323,
    "mount": 165,
    "pivot_root": 155,
    "swapon": 167,
    "reboot": 169,
    "open_by_handle_at": 304,
    "io_uring_setup": 425,
    "clone3": 435,
}
CLONE_NEWUSER, CLONE_NEWNS = 0x10000000, 0x00020000


@pytest.mark.parametrize("user", USERS)
def test_kernel_interfaces_a_jail_never_needs_are_denied(jails: Sandbox, user: str) -> None:
    calls = {
        "init_module": (0, 0, 0),
        "finit_module": (0, 0, 0),
        "delete_module": (0, 0),
        "kexec_load": (0, 0, 0, 0),
        "kexec_file_load": (0, 0, 0, 0, 0),
        "bpf": (0, 0, 0),  # BPF_MAP_CREATE with no attributes
        "keyctl": (1, 0),  # KEYCTL_JOIN_SESSION_KEYRING, anonymous: allowed to any process
        "add_key": (0, 0, 0, 0, 0),
        "request_key": (0, 0, 0, 0),
        "perf_event_open": (0, 0, -1, -1, 0),
        "userfaultfd": (0,),
        "mount": (0, 0, 0, 0, 0),
        "pivot_root": (0, 0),
        "swapon": (0, 0),
        "reboot": (0xFEE1DEAD, 0x28121969, 0x4321FEDC, 0),  # LINUX_REBOOT_CMD_POWER_OFF
        "open_by_handle_at": (0, 0, 0),
        "io_uring_setup": (1, 0),
    }
    for name, args in calls.items():
        rc, err = syscall(jails, user, SYS[name], *args)
        assert rc == -1, f"{name} returned {rc} in the jail"
        assert err in (1, 38), f"{name}: errno {err}, not EPERM/ENOSYS (the filter's answers)"
    rc, err = syscall(jails, user, SYS["clone3"], 0, 0)
    assert (rc, err) == (-1, 38)  # ENOSYS: the C library falls back to clone, which the filter sees


@pytest.mark.parametrize("user", USERS)
def test_no_nested_user_namespace_and_no_setns(jails: Sandbox, user: str) -> None:
    code, out = sh(jails, "unshare -U true", user)
    assert code != 0, out
    code, out = sh(jails, "unshare -U -r id", user)
    assert code != 0, out
    assert syscall(jails, user, SYS["unshare"], CLONE_NEWUSER) == (-1, 1)
    assert syscall(jails, user, SYS["unshare"], CLONE_NEWNS)[0] == -1
    script = "import os; fd = os.open('/proc/self/ns/net', os.O_RDONLY); print(fd)"
    fd = int(sh(jails, f'python3 -c "{script}"', user)[1].split()[-1])
    assert fd > 0
    assert syscall(jails, user, SYS["setns"], 0, 0)[0] == -1


PTRACE = """
import ctypes, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
pid = os.fork()
if pid == 0:
    time.sleep(5); os._exit(0)
rc = libc.ptrace(16, pid, 0, 0)  # PTRACE_ATTACH to our own child
print(rc, ctypes.get_errno())
os.kill(pid, 9)
"""


@pytest.mark.parametrize("user", USERS)
def test_ptrace_is_denied_even_of_the_jails_own_processes(jails: Sandbox, user: str) -> None:
    code, out = sh(jails, f"python3 -c '{PTRACE}'", user)
    assert code == 0, out
    assert out.split()[-2:] == ["-1", "1"], out


@pytest.mark.parametrize("user", USERS)
def test_another_tenants_processes_and_files_are_out_of_reach(jails: Sandbox, user: str) -> None:
    # A marker process in the other tenant's jail, found on the host by its jail root.
    jails.exec("iso2", ["/bin/sh", "-c", "nohup sleep 300 >/dev/null 2>&1 &"], user="agent")
    others = [p for p in _jail_pids(jails, "iso2") if _cmd(Path(f"/proc/{p}")).startswith("sleep 300")]
    assert others
    other = others[0]
    seen = sh(jails, "cat /proc/[0-9]*/cmdline | tr '\\0' ' '", user)[1]
    assert "sleep 300" not in seen  # its pid namespace shows none of the other jail's processes
    assert sh(jails, f"kill -0 {other}", user)[0] != 0
    assert sh(jails, f"kill -9 {other}", user)[0] != 0
    assert syscall(jails, user, SYS["ptrace"], 16, other, 0, 0)[0] == -1
    assert Path(f"/proc/{other}").exists()  # still alive
    env_b = jails.root("iso2") / "home/agent/.env"
    for path in (str(env_b), f"/proc/{other}/root/home/agent/.env", "/proc/1/root/../iso2/root/home/agent/.env"):
        code, out = sh(jails, f"cat {path}", user)
        assert "of-iso2" not in out and code != 0, path


def test_a_host_process_with_one_tenants_agent_uid_reaches_nothing_of_another(jails: Sandbox, tmp_path: Path) -> None:
    uid_a, gid_a = jails.user_ids("iso", "agent")
    uid_b, gid_b = jails.user_ids("iso2", "agent")
    assert uid_a != uid_b and gid_a != gid_b
    assert uid_a >= 1_000_000_000 and uid_b >= 1_000_000_000
    others = _jail_pids(jails, "iso2")
    env_b = jails.root("iso2") / "home/agent/.env"
    agents = Path(tempfile.mkdtemp(prefix="colibri-iso-")) / "agents"  # a path every host user can walk
    _make_socket_dir(agents / "iso", gid_a)
    _make_socket_dir(agents / "iso2", gid_b)
    agents.parent.chmod(0o755)
    st = (agents / "iso2").stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (0, gid_b, 0o750)

    def as_agent_a(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv, user=uid_a, group=gid_a, extra_groups=[], capture_output=True, text=True, check=False
        )

    for path in [str(env_b), *(f"/proc/{p}/root/home/agent/.env" for p in others)]:
        result = as_agent_a("/bin/cat", path)
        assert result.returncode != 0 and "of-iso2" not in result.stdout, path
    assert as_agent_a("/bin/ls", str(agents / "iso2")).returncode != 0
    assert as_agent_a("/bin/ls", str(agents / "iso")).returncode == 0  # its own tenant's: yes
    # The other tenant's processes: no signal, no /proc/<pid>/environ.
    for pid in others:
        assert as_agent_a("/bin/kill", "-0", str(pid)).returncode != 0
        assert as_agent_a("/bin/cat", f"/proc/{pid}/environ").returncode != 0
    shutil.rmtree(agents.parent)


def test_files_written_from_the_host_belong_to_the_jails_ids(jails: Sandbox, tmp_path: Path) -> None:
    base = jails.user_ids("iso", "root")[0]
    source = tmp_path / "payload.txt"
    source.write_text("hello\n")
    jails.copy_in("iso", source, "/usr/local/etc/colibri/new/payload.txt", mode=0o600)
    root = jails.root("iso")
    for rel in ("usr/local/etc/colibri/new/payload.txt", "usr/local/etc/colibri/new", "etc/passwd", "tmp"):
        st = (root / rel).lstat()
        assert (st.st_uid, st.st_gid) == (base, base), rel
    home = (root / "home/agent").stat()
    assert (home.st_uid, home.st_gid) == (base + 1001, base + 1001)
    # ... so root in the jail manages them, and the agent's own home is the agent's.
    assert (
        sh(jails, "echo more >> /usr/local/etc/colibri/new/payload.txt && cat /etc/passwd >/dev/null", "root")[0] == 0
    )
    assert sh(jails, "touch /home/agent/mine", "agent")[0] == 0
    assert sh(jails, "touch /usr/local/etc/colibri/new/x", "agent")[0] != 0


def test_a_fork_bomb_stops_at_the_process_limit(jails: Sandbox) -> None:
    script = "i=0; while [ $i -lt 120 ]; do sleep 20 & i=$((i+1)); done; echo tried"
    _, out = sh(jails, script, "agent", timeout=60)
    running = _jail_pids(jails, "iso")
    assert len(running) <= LIMITS.max_processes, out
    assert len(running) >= LIMITS.max_processes - 5  # it did get near the limit, then stopped
    assert "fork" in out.lower() or "resource" in out.lower(), out
    # The other jail and the host are unaffected meanwhile.
    assert sh(jails, "echo ok", "agent", name="iso2") == (0, "ok\n")
    assert subprocess.run(["/bin/true"], check=False).returncode == 0
    for pid in running:
        if _cmd(Path(f"/proc/{pid}")).startswith("sleep 20"):
            os.kill(pid, 9)


@pytest.mark.parametrize("user", USERS)
def test_memory_beyond_the_limit_is_killed(jails: Sandbox, user: str) -> None:
    start = time.monotonic()
    code, out = sh(jails, "python3 -c 'b = bytearray(256 * 1024 * 1024); print(len(b))'", user, timeout=60)
    assert code != 0 and str(256 * 1024 * 1024) not in out, out
    assert time.monotonic() - start < 60
    assert sh(jails, "echo alive", user) == (0, "alive\n")
    assert sh(jails, "echo ok", "agent", name="iso2") == (0, "ok\n")


def test_open_files_are_limited(jails: Sandbox) -> None:
    _, out = sh(jails, "ulimit -n", "agent")
    assert int(out.split()[-1]) == 256
    assert sh(jails, "ulimit -n 100000", "root")[0] != 0


@pytest.mark.parametrize("user", USERS)
def test_a_jail_process_cannot_dump_core(jails: Sandbox, user: str) -> None:
    """A core dump of a jail process would reach the host: a file where core_pattern says, or, on
    a host whose core_pattern is a pipe, a helper the kernel runs as host root with the dump.  The
    jail's RLIMIT_CORE is 1 byte, hard (the kernel's "never for a pipe" value, and below any file
    dump), and a jail cannot change it."""
    folder = "/tmp/core-" + user
    crash = "python3 -c 'import os; os.kill(os.getpid(), 11)'"
    script = f"mkdir -p {folder} && cd {folder} && {{ ulimit -c unlimited; {crash}; }}; ls {folder}"
    _, out = sh(jails, script, user)
    left = [p.name for p in (jails.root("iso") / folder.lstrip("/")).iterdir()]
    assert not left, f"a jail process dumped core ({left}): {out}"
    assert sh(jails, "ulimit -c unlimited", user)[0] != 0, "the jail raised its core limit"
    code, out = sh(jails, "ulimit -Hc", user)
    assert code == 0 and out.split()[-1] == "0", f"the jail's hard core limit is {out}"
    getrlimit = "import resource; print(*resource.getrlimit(resource.RLIMIT_CORE))"
    code, out = sh(jails, f"python3 -c '{getrlimit}'", user)
    assert out.split()[-2:] == ["1", "1"], out
    lower = "import resource; resource.setrlimit(resource.RLIMIT_CORE, (0, 1))"
    assert sh(jails, f"python3 -c '{lower}'", user)[0] != 0, "the jail lowered its core limit to 0 (a pipe dumps)"


def test_limits_are_in_the_jails_cgroups(jails: Sandbox) -> None:
    groups = jails._cgroups("iso")
    if groups.version == 1:
        mem, pids, cpu = groups.groups
        assert int((mem / "memory.limit_in_bytes").read_text()) == 64 * 1024 * 1024
        assert int((pids / "pids.max").read_text()) == LIMITS.max_processes
        assert int((cpu / "cpu.cfs_quota_us").read_text()) == 50_000
    else:
        group = groups.groups[0]
        assert int((group / "memory.max").read_text()) == 64 * 1024 * 1024
        assert int((group / "pids.max").read_text()) == LIMITS.max_processes
    init = jails._init_pid("iso")
    assert init is not None
    for group in groups.groups:
        assert str(init) in (group / "cgroup.procs").read_text().split()


def test_limits_can_be_raised_on_groups_that_exist(jails: Sandbox) -> None:
    # A jail that died leaves its groups until it is stopped or started again: a start with a
    # higher memory limit must still set it (v1 keeps memsw >= the limit).
    groups = cgroups.hierarchy(f"probe-{os.getpid()}")
    try:
        cgroups.create(groups, Limits(memory_mib=64, max_processes=40, cpu_percent=50))
        cgroups.create(groups, Limits(memory_mib=256, max_processes=80, cpu_percent=100))
        limit = "memory.limit_in_bytes" if groups.version == 1 else "memory.max"
        assert int((groups.groups[0] / limit).read_text()) == 256 * 1024 * 1024
    finally:
        cgroups.remove(groups)
    assert not any(group.exists() for group in groups.groups)
