"""Every runnable block of every runbook, for real, on the sandbox backend.

A block fenced ```sh is runnable (see runbooks/README.md); ```sh freebsd and ```text are not.
Each runbook's runnable blocks run in order in one ``bash -euo pipefail`` with a private state
directory, staged secrets in place of a vault, and ``.venv/bin`` first on PATH.  The runbooks run
side by side (each in its own state directory) to keep the file's wall time down; afterwards every
jail they left is destroyed and any process they left behind (a daemon) is stopped.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO, require

RUNBOOKS = REPO / "runbooks"
TIMEOUT = 150.0  # a cap for a loaded machine; the runbooks take about a minute side by side
FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```$", re.DOTALL | re.MULTILINE)
REGISTERED = re.compile(r"colibri register-tenant ([A-Za-z0-9][A-Za-z0-9_-]*)")


def blocks(path: Path) -> list[tuple[str, str]]:
    """(info string, body) of each fenced block, in order."""
    return [(m.group(1).strip(), m.group(2)) for m in FENCE.finditer(path.read_text())]


def runnable(path: Path) -> list[str]:
    return [body for info, body in blocks(path) if info == "sh"]


# Runbooks left out, and why.  Its author owns the file; once its vault-only blocks are fenced
# ```sh freebsd (see runbooks/README.md), drop it from here.
NOT_RUN = {
    "rotate-tenant-key.md": "its ```sh blocks need a real vault, bw, jq and FreeBSD paths (not relabelled yet)",
}
RUNBOOK_FILES = sorted(p for p in RUNBOOKS.glob("*.md") if runnable(p) and p.name not in NOT_RUN)


@dataclass
class Run:
    path: Path
    home: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes]
    log: Path


def private_env(home: Path) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("COLIBRI_", "BW_", "BITWARDENCLI_"))}
    (home / "colibri.toml").write_text("")
    (home / "tmp").mkdir(exist_ok=True)  # the runbooks' ${TMPDIR:-/tmp} files: one run's own
    return {
        **keep,
        "PATH": f"{REPO / '.venv/bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "COLIBRI_CONFIG": str(home / "colibri.toml"),
        "COLIBRI_STATE_DIR": str(home / "db"),
        "COLIBRI_RUN_DIR": str(home / "run"),
        "COLIBRI_LOG_DIR": str(home / "log"),
        "COLIBRI_JAIL_BACKEND": "sandbox",
        "COLIBRI_HOST": "runbook-host",
        "NO_COLOR": "1",
        "TMPDIR": str(home / "tmp"),
    }


def stage_secrets(home: Path, script: str) -> None:
    """A root-only provider.env for each tenant the runbook registers, in place of a vault."""
    staged = home / "db" / "staged"
    for tenant in sorted(set(REGISTERED.findall(script))):
        folder = staged / tenant
        folder.mkdir(parents=True, exist_ok=True)
        for path in (home / "db", staged, folder):
            path.chmod(0o700)
        env_file = folder / "provider.env"
        env_file.write_text(f"PROOF_TOKEN=runbook-{tenant}\nPROVIDER_API_KEY=sk-test-{tenant}\n")
        env_file.chmod(0o600)


def start(path: Path, home: Path) -> Run:
    script = "\n".join(runnable(path))
    env = private_env(home)
    stage_secrets(home, script)
    (home / "runbook.sh").write_text(script)
    log = home / "output.log"
    with log.open("wb") as out:  # a file, not a pipe: a daemon left running must not hold it open
        process = subprocess.Popen(
            ["bash", "-euo", "pipefail", str(home / "runbook.sh")],
            cwd=home,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Run(path, home, env, process, log)


def colibri(run: Run, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["colibri", *args], env=run.env, capture_output=True, text=True, timeout=60, check=False, cwd=run.home
    )


def clean_up(run: Run) -> list[str]:
    """Destroy the jails the runbook left, then stop anything else it left running; say what was left.

    Sandbox jails run in the runbook's process group, so the jails go first: whatever is still in
    the group afterwards (a daemon the runbook did not stop) is a leak.
    """
    left: list[str] = []
    listed = colibri(run, "list-tenants", "--json")
    tenants = json.loads(listed.stdout)["data"] if listed.returncode == 0 else []
    for tenant in tenants:
        if tenant["status"] in ("active", "stopped", "failed", "spawning"):
            left.append(f"tenant {tenant['tenant_id']} {tenant['status']}")
            colibri(run, "destroy-agent", tenant["tenant_id"], "--yes")
    jails = run.home / "db" / "jails"
    remaining = sorted(p.name for p in jails.iterdir()) if jails.is_dir() else []
    assert not remaining, f"jails left after clean-up: {remaining}"
    try:
        os.killpg(run.process.pid, signal.SIGTERM)  # the group this test started for the runbook
        left.append("processes still running in the runbook's process group")
    except ProcessLookupError:
        pass
    return left


@pytest.fixture(scope="module", name="runs")
def runs_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Run]]:
    require(shutil.which("bwrap") is not None, "bubblewrap")
    require(os.geteuid() == 0, "root")
    require((REPO / ".venv/bin/colibri").exists(), ".venv with colibri (bash tests/setup.sh)")
    started = {p.name: start(p, tmp_path_factory.mktemp(p.stem)) for p in RUNBOOK_FILES}
    yield started
    for run in started.values():
        if run.process.poll() is None:
            os.killpg(run.process.pid, signal.SIGKILL)
            run.process.wait()
        clean_up(run)


def test_runbooks_found() -> None:
    names = {p.name for p in RUNBOOK_FILES}
    assert {"first-proof.md", "onboard-tenant.md", "recover-failed-spawn.md", "lost-agent.md"} <= names
    assert {"daemon-or-host-restart.md", "install-freebsd-host.md"} <= names


@pytest.mark.parametrize("name", [p.name for p in sorted(RUNBOOKS.glob("*.md"))])
def test_fences_are_labelled(name: str) -> None:
    """Every fence says what it is: sh (runnable here), sh freebsd, or text."""
    for info, body in blocks(RUNBOOKS / name):
        assert info in ("sh", "sh freebsd", "text"), f"{name}: fence {info!r} before {body[:60]!r}"


@pytest.mark.integration
@pytest.mark.parametrize("name", [p.name for p in RUNBOOK_FILES])
def test_runbook(runs: dict[str, Run], name: str) -> None:
    run = runs[name]
    deadline = time.monotonic() + TIMEOUT
    try:
        code = run.process.wait(timeout=max(0.1, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        os.killpg(run.process.pid, signal.SIGKILL)
        run.process.wait()
        code = None
    output = run.log.read_text(errors="replace")
    left = clean_up(run)
    assert code == 0, f"{name}: exit {code}\n{output[-4000:]}"
    assert not [x for x in left if x.startswith("processes")], f"{name} left processes running:\n{output[-2000:]}"
