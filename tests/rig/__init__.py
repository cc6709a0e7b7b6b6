"""The three-host rig (issue 11): three network namespaces on a private /24, each with a real
OpenSSH sshd and its own colibri state, one PostgreSQL server they all reach, the orchestrator (the
test process) in the root namespace.

    root namespace                 bridge colrigN  10.77.N.1/24   (PostgreSQL listens here too)
      ├── veth ── netns colibri-rig-N-a  10.77.N.2  sshd, colibri.toml (state/run/log in a/)
      ├── veth ── netns colibri-rig-N-b  10.77.N.3
      └── veth ── netns colibri-rig-N-c  10.77.N.4

N is the first of 100..199 whose bridge name is free (so xdist workers and concurrent runs each
get their own).  Each sshd: its own ed25519 host key, ``ListenAddress`` its address, root login by
key only (the rig's client key, ``restrict`` in the rig's authorized_keys), ``SetEnv
COLIBRI_CONFIG=`` that host's colibri.toml (the sandbox backend, its own dirs, the shared
database via the bridge address), ``LogLevel VERBOSE`` to ``HOST/sshd.log``.  The remote command
is ``HOST/colibri``: a wrapper that appends ``<pid> <argv>`` to ``HOST/invocations`` and execs this
worktree's .venv/bin/colibri (so a test sees what ran there, and which process to kill).

``rig`` (module-scoped fixture, tests/rig/fixtures.py) builds it and tears it all down: sshd and
every process left in the namespaces killed, the namespaces and the bridge deleted.
"""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.servers.postgres import PostgresServer, _pg_bindir

REPO = Path(__file__).resolve().parents[2]
COLIBRI = REPO / ".venv" / "bin" / "colibri"
SSHD = Path("/usr/sbin/sshd")
NAMES = ("a", "b", "c")


def in_netns(netns: str) -> list[str]:
    """The argv prefix that runs a program in ``netns``'s network namespace only.  Not ``ip netns
    exec``: that also unshares the mount namespace and mounts a new /sys, which hides the host's
    cgroup v1 hierarchies (/sys/fs/cgroup/<controller>) from the program, and the sandbox backend's
    jails need them; a real host's sshd and daemon see the host's own /sys."""
    return ["nsenter", f"--net=/run/netns/{netns}", "--"]


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=check, capture_output=True, text=True, timeout=60)


def _base_env() -> dict[str, str]:
    """A rig process's environment: never the test's COLIBRI_* (a host has its own colibri.toml)."""
    return {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "LANG": "C.UTF-8"}


def _keygen(path: Path, comment: str) -> None:
    for old in (path, path.with_name(path.name + ".pub")):
        old.unlink(missing_ok=True)
    _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path))
    path.chmod(0o600)


@dataclass
class RigHost:
    name: str  # a, b or c
    netns: str
    address: str
    root: Path
    proc: subprocess.Popen[bytes] | None = None
    daemon: subprocess.Popen[bytes] | None = None

    @property
    def host_key(self) -> Path:
        return self.root / "ssh_host_ed25519_key"

    @property
    def config(self) -> Path:
        return self.root / "colibri.toml"

    @property
    def sshd_config(self) -> Path:
        return self.root / "sshd_config"

    @property
    def log(self) -> Path:
        return self.root / "sshd.log"

    @property
    def command(self) -> Path:
        """The remote colibri (the logging wrapper)."""
        return self.root / "colibri"

    @property
    def invocations(self) -> Path:
        return self.root / "invocations"

    def host_key_line(self) -> str:
        return self.host_key.with_name(self.host_key.name + ".pub").read_text().strip()

    def ran(self) -> list[tuple[int, str]]:
        """``(pid, argv)`` of every run of the remote colibri so far."""
        if not self.invocations.exists():
            return []
        out = []
        for line in self.invocations.read_text().splitlines():
            pid, _, argv = line.partition(" ")
            out.append((int(pid), argv))
        return out

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def start_sshd(self) -> None:
        self.proc = subprocess.Popen(
            [*in_netns(self.netns), str(SSHD), "-D", "-f", str(self.sshd_config), "-E", str(self.log)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_base_env(),
        )  # fmt: skip
        deadline = time.monotonic() + 15
        while True:
            with contextlib.suppress(OSError), socket.create_connection((self.address, 22), timeout=0.5) as sock:
                if sock.recv(64).startswith(b"SSH-"):
                    return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"sshd of rig host {self.name} did not start; see {self.log}")
            time.sleep(0.05)

    def stop_sshd(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    @property
    def admin_socket(self) -> Path:
        return self.root / "run" / "admin.sock"

    def start_daemon(self, **settings: str) -> None:
        """This host's own colibri daemon, in its namespace, on its colibri.toml (``settings``:
        extra ``COLIBRI_*`` values, e.g. ``heartbeat_interval="0.2"``); returns once /health answers."""
        from colibri.adapters.daemon_client import DaemonClient

        env = {**_base_env(), "COLIBRI_CONFIG": str(self.config)}
        env.update({f"COLIBRI_{key.upper()}": value for key, value in settings.items()})
        log = (self.root / "daemon.log").open("ab")
        self.daemon = subprocess.Popen(
            [*in_netns(self.netns), str(COLIBRI), "daemon"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
        )  # fmt: skip
        log.close()
        client = DaemonClient(self.admin_socket, timeout=5)
        deadline = time.monotonic() + 120  # only a hung daemon's bound: a busy machine took over 30 s
        while True:
            if self.daemon.poll() is not None:
                raise RuntimeError(f"the daemon of rig host {self.name} exited; see {self.root / 'daemon.log'}")
            with contextlib.suppress(Exception):
                if client.health()["status"] in ("ok", "degraded"):
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the daemon of rig host {self.name} did not answer /health")
            time.sleep(0.1)

    def stop_daemon(self, sig: int = signal.SIGTERM) -> int | None:
        if self.daemon is None:
            return None
        if self.daemon.poll() is None:
            self.daemon.send_signal(sig)
            try:
                self.daemon.wait(30)
            except subprocess.TimeoutExpired:
                self.daemon.kill()
                self.daemon.wait(10)
        code, self.daemon = self.daemon.returncode, None
        return code

    def new_host_key(self) -> str:
        """A fresh host key (the host "reinstalled"), sshd restarted with it: its public line."""
        self.stop_sshd()
        _keygen(self.host_key, f"rig-{self.name}")
        self.start_sshd()
        return self.host_key_line()

    def kill_all(self) -> None:
        """Every process left in the namespace (sshd sessions, remote serve)."""
        found = _run("ip", "netns", "pids", self.netns, check=False).stdout.split()
        for pid in found:
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)


@dataclass
class Rig:
    number: int
    root: Path
    hosts: dict[str, RigHost] = field(default_factory=dict)
    postgres: PostgresServer | None = None
    database: str = "rig"

    @property
    def bridge(self) -> str:
        return f"colrig{self.number}"

    @property
    def gateway(self) -> str:
        """The root namespace's address on the rig (the orchestrator's, PostgreSQL's)."""
        return f"10.77.{self.number}.1"

    @property
    def unused_address(self) -> str:
        """An address on the rig's network that nothing answers."""
        return f"10.77.{self.number}.99"

    @property
    def client_key(self) -> Path:
        return self.root / "id_ed25519"

    @property
    def authorized_keys(self) -> Path:
        return self.root / "authorized_keys"

    def database_url(self, from_rig: bool = False) -> str:
        """The rig's shared database: from the root namespace (127.0.0.1) or a namespace (bridge)."""
        assert self.postgres is not None
        return self.postgres.url(self.database, self.gateway if from_rig else "127.0.0.1")

    def ns_exec(self, host: str, *argv: str) -> subprocess.CompletedProcess[str]:
        return _run(*in_netns(self.hosts[host].netns), *argv, check=False)


def _claim_bridge() -> int:
    """The first rig number whose links are all free (a namespace another process's mount
    namespace still holds may outlive its rig with its veth: that number is skipped)."""
    taken = _run("ip", "-o", "link", "show").stdout
    for number in range(100, 200):
        if f" colrig{number}" in taken:
            continue
        done = _run("ip", "link", "add", f"colrig{number}", "type", "bridge", check=False)
        if done.returncode == 0:
            return number
    raise RuntimeError("no free rig network (bridges colrig100..199 all exist)")


def build() -> Rig:
    """Build the rig (raises on any failure, after tearing down what was built)."""
    number = _claim_bridge()
    rig = Rig(number, Path(tempfile.mkdtemp(prefix=f"colibri-rig-{number}-")))
    try:
        _network(rig)
        _postgres(rig)
        _keygen(rig.client_key, "colibri-rig-orchestrator")
        pub = rig.client_key.with_name("id_ed25519.pub").read_text().strip()
        rig.authorized_keys.write_text(f"restrict {pub}\n")
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation directory
        for host in rig.hosts.values():
            _host_files(rig, host)
            host.start_sshd()
    except BaseException:
        teardown(rig)
        raise
    return rig


def _network(rig: Rig) -> None:
    _run("ip", "addr", "add", f"{rig.gateway}/24", "dev", rig.bridge)
    _run("ip", "link", "set", rig.bridge, "up")
    for index, name in enumerate(NAMES):
        netns = f"colibri-rig-{rig.number}-{name}"
        outside, inside = f"colrig{rig.number}{name}", f"colrig{rig.number}{name}i"
        address = f"10.77.{rig.number}.{index + 2}"
        rig.hosts[name] = RigHost(name, netns, address, rig.root / name)
        _run("ip", "netns", "add", netns)
        _run("ip", "link", "add", outside, "type", "veth", "peer", "name", inside)
        _run("ip", "link", "set", inside, "netns", netns)
        _run("ip", "-n", netns, "link", "set", inside, "name", "eth0")
        _run("ip", "-n", netns, "addr", "add", f"{address}/24", "dev", "eth0")
        _run("ip", "-n", netns, "link", "set", "eth0", "up")
        _run("ip", "-n", netns, "link", "set", "lo", "up")
        _run("ip", "link", "set", outside, "master", rig.bridge)
        _run("ip", "link", "set", outside, "up")


def _postgres(rig: Rig) -> None:
    bindir = _pg_bindir()
    if bindir is None:
        raise RuntimeError("PostgreSQL server binaries missing")
    root = rig.root / "pg"
    root.mkdir()
    root.chmod(0o755)
    rig.root.chmod(0o755)
    network = f"10.77.{rig.number}.0/24"
    rig.postgres = PostgresServer(
        bindir, root, listen=("127.0.0.1", rig.gateway), hba=(f"host all all {network} trust",)
    )
    rig.postgres.start()
    url = rig.postgres.create_database()
    rig.database = url.rsplit("/", 1)[1]


def _host_files(rig: Rig, host: RigHost) -> None:
    host.root.mkdir(mode=0o700)
    _keygen(host.host_key, f"rig-{host.name}")
    host.sshd_config.write_text(
        "\n".join((
            "Port 22",
            f"ListenAddress {host.address}",
            f"HostKey {host.host_key}",
            f"PidFile {host.root / 'sshd.pid'}",
            f"AuthorizedKeysFile {rig.authorized_keys}",
            "PermitRootLogin prohibit-password",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "StrictModes no",  # the rig's files live under /tmp (sticky, world-writable)
            "AllowAgentForwarding no",
            "AllowTcpForwarding no",
            "X11Forwarding no",
            "PermitTTY no",
            "MaxSessions 10",
            "LogLevel VERBOSE",
            f"SetEnv COLIBRI_CONFIG={host.config}",
            "",
        ))
    )  # fmt: skip
    host.config.write_text(
        "\n".join((
            f'host = "rig-{host.name}"',
            'jail_backend = "sandbox"',
            f'state_dir = "{host.root / "state"}"',
            f'run_dir = "{host.root / "run"}"',
            f'log_dir = "{host.root / "log"}"',
            f'database_url = "{rig.database_url(from_rig=True)}"',
            "",
        ))
    )  # fmt: skip
    write_command(host.command, f'exec {COLIBRI} "$@"', host.invocations)


def write_command(path: Path, body: str, invocations: Path) -> Path:
    """A remote command: logs ``<pid> <argv>`` to ``invocations``, then runs ``body`` (sh)."""
    path.write_text(f'#!/bin/sh\necho "$$ $*" >> {invocations}\n{body}\n')
    path.chmod(0o755)
    return path


def teardown(rig: Rig) -> None:
    for host in rig.hosts.values():
        with contextlib.suppress(Exception):
            host.stop_daemon()
        with contextlib.suppress(Exception):
            host.stop_sshd()
        with contextlib.suppress(Exception):
            host.kill_all()
        # the veth first: deleting it from this side removes its peer even if the namespace
        # lingers (a sandbox's mount namespace, made while the rig was up, may still hold it)
        _run("ip", "link", "del", f"colrig{rig.number}{host.name}", check=False)
        _run("ip", "netns", "del", host.netns, check=False)
    _run("ip", "link", "del", rig.bridge, check=False)
    if rig.postgres is not None:
        rig.postgres.stop()
    shutil.rmtree(rig.root, ignore_errors=True)
