"""The orchestrator of the rig's hive and what tests run on its hosts (tests/rig, issue 11).

``Orchestrator``: the root namespace's colibri with its own colibri.toml, the rig's shared database
and the rig's SSH key, and the operator's vault credential (a marker file that must never reach a
host); ``on(host, ...)``: colibri run on a rig host, in its network namespace, on its own config.
"""

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from tests.rig import COLIBRI, Rig, RigHost, in_netns

FAST = {
    "heartbeat_interval": "0.3",
    "agent_stale_after": "1.5",
    "agent_lost_after": "3",
    "host_lease_seconds": "3",
    "host_lease_grace": "1",
    "task_poll_interval": "0.2",
    "reconcile_interval": "0",
}
SECRETS = {"t-alpha": "ALPHA-only-in-its-jail-7f3a", "t-beta": "BETA-only-in-its-jail-91c2"}
OPERATOR = "OPERATOR-credential-never-leaves-e55d"


class Orchestrator:
    """The root namespace's colibri: its own colibri.toml, the shared database, the rig's key."""

    def __init__(self, rig: Rig, root: Path) -> None:
        self.root = root
        root.mkdir(mode=0o700)
        config = root / "colibri.toml"
        config.write_text(
            "\n".join((
                'host = "orch"',
                'jail_backend = "sandbox"',
                f'state_dir = "{root / "state"}"',
                f'run_dir = "{root / "run"}"',
                f'log_dir = "{root / "log"}"',
                f'database_url = "{rig.database_url()}"',
                f'ssh_key_file = "{rig.client_key}"',
                "",
            ))
        )  # fmt: skip
        self.env = {"PATH": os.environ["PATH"], "LANG": "C.UTF-8", "COLIBRI_CONFIG": str(config)}
        # the operator's vault credential lives here, on the orchestrator only
        vault = root / "state" / "vault"
        vault.mkdir(parents=True, mode=0o700)
        (vault / "master_password").write_text(OPERATOR + "\n")
        (vault / "master_password").chmod(0o600)

    def argv(self, *args: str) -> list[str]:
        return [str(COLIBRI), *args]

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(self.argv(*args), env=self.env, capture_output=True, text=True, timeout=180)
        if check:
            assert done.returncode == 0, (args, done.returncode, done.stderr)
        return done

    def json(self, *args: str) -> Any:
        """The ``data`` of the command's --json envelope."""
        return json.loads(self(*args, "--json").stdout)["data"]

    def stage(self, tenant: str, value: str) -> None:
        staged = self.root / "state" / "staged"
        (staged / tenant).mkdir(parents=True, mode=0o700, exist_ok=True)
        staged.chmod(0o700)
        path = staged / tenant / "provider.env"
        path.write_text(f"PROVIDER_KEY={value}\n")
        path.chmod(0o600)


def on(host: RigHost, *args: str) -> subprocess.CompletedProcess[str]:
    """colibri run on a rig host, in its namespace, with its own colibri.toml."""
    env = {"PATH": os.environ["PATH"], "LANG": "C.UTF-8", "COLIBRI_CONFIG": str(host.config)}
    done = subprocess.run([*in_netns(host.netns), str(COLIBRI), *args], env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, (host.name, args, done.returncode, done.stderr)
    return done


def on_json(host: RigHost, *args: str) -> Any:
    return json.loads(on(host, *args, "--json").stdout)["data"]


def walk_files(root: Path) -> list[Path]:
    """Every regular file under ``root`` (not through links), while jails come and go under it: a
    directory that vanishes mid-walk (a jail being built, then renamed) is passed over."""
    found = []
    for top, dirs, names in os.walk(root, onerror=lambda _error: None):
        found += [Path(top) / name for name in names]
        dirs[:] = [d for d in dirs if not (Path(top) / d).is_symlink()]
    return [path for path in found if path.is_file() and not path.is_symlink()]


def files_holding(root: Path, needle: bytes) -> list[Path]:
    found = []
    for path in walk_files(root):
        try:
            if needle in path.read_bytes():
                found.append(path)
        except OSError:
            continue
    return found


def jail_dirs(root: Path, tenant: str) -> list[Path]:
    """The host's jail directories of ``tenant`` (``<state_dir>/jails/<tenant>``), found while jails
    come and go."""
    return [Path(top) / tenant for top, dirs, _ in os.walk(root, onerror=lambda _error: None)
            if Path(top).name == "jails" and tenant in dirs]  # fmt: skip


def jail_processes(tenant: str) -> list[str]:
    """Processes left in any cgroup of ``tenant``'s sandbox jails (``colibri/<tenant>-<tag>``)."""
    found = []
    for procs in Path("/sys/fs/cgroup").glob(f"*/colibri/{tenant}-*/cgroup.procs"):
        found += [f"{procs.parent}: {pid}" for pid in procs.read_text().split()]
    for procs in Path("/sys/fs/cgroup/colibri").glob(f"{tenant}-*/cgroup.procs"):
        found += [f"{procs.parent}: {pid}" for pid in procs.read_text().split()]
    return found
