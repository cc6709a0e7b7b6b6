"""Shared test set-up: a clean environment, tmp settings, and honest gating of real parts.

A test that needs a real program (bw, bwrap, PostgreSQL) calls ``require(...)``: it skips
on a developer machine without it, and FAILS under CI (CI=true), so CI never passes by skipping.
"""

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(ok: bool, what: str) -> None:
    """Skip locally, fail in CI, when a real part is missing."""
    if ok:
        return
    if in_ci():
        pytest.fail(f"required for this test and missing in CI: {what}")
    pytest.skip(f"missing: {what}")


def require_root(what: str) -> None:
    """Skip, also under CI, when the test does what only root can (``what``: mknod, fchown to
    another uid).  These are the unit layer's only root cases: it runs as any user without them
    (``setpriv --reuid=nobody ... pytest tests/unit``), and the README command, run as root, runs them."""
    if os.geteuid() != 0:
        pytest.skip(f"needs root: {what}")


def require_program(name: str) -> str:
    path = shutil.which(name)
    require(path is not None, f"program {name}")
    assert path is not None
    return path


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Drop COLIBRI_* and BW_* from the environment and point colibri's paths at tmp dirs."""
    for name in list(os.environ):
        if name.startswith(("COLIBRI_", "BW_", "BITWARDENCLI_")):
            monkeypatch.delenv(name)
    home = tmp_path / "colibri-home"
    config = home / "colibri.toml"
    home.mkdir()
    config.write_text("")
    monkeypatch.setenv("COLIBRI_CONFIG", str(config))
    monkeypatch.setenv("COLIBRI_STATE_DIR", str(home / "db"))
    monkeypatch.setenv("COLIBRI_RUN_DIR", str(home / "run"))
    monkeypatch.setenv("COLIBRI_LOG_DIR", str(home / "log"))
    monkeypatch.setenv("COLIBRI_HOST", "testhost")
    yield


Invoke = Callable[..., tuple[int, str, str]]


@pytest.fixture(name="invoke")
def invoke_fixture(capsys: pytest.CaptureFixture[str]) -> Invoke:
    """Run a command line through ``colibri.cli.app.run`` (the real main path, exit-code mapping
    included) in this process: returns (exit code, stdout, stderr)."""
    from colibri.cli.app import run

    def invoke(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = run(list(args))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return invoke


pytest_plugins = ["tests.servers.postgres", "tests.rig.fixtures"]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say plainly how many store tests ran on the real PostgreSQL server."""
    passed = [r for r in terminalreporter.stats.get("passed", []) if "[postgres]" in r.nodeid]
    failed = [r for r in terminalreporter.stats.get("failed", []) if "[postgres]" in r.nodeid]
    if passed or failed:
        terminalreporter.write_line(
            f"PostgreSQL store suite: {len(passed)} passed, {len(failed)} failed on a real server"
        )


SLOWEST_FILES = (
    "tests/integration/test_hive_rig_faults.py",
    "tests/integration/test_hive_limits.py",
    "tests/integration/test_bastille_isolation.py",
    "tests/integration/test_vaultwarden_server.py",
    "tests/integration/test_bastille_faults.py",
    "tests/integration/test_bastille_rc.py",
    "tests/integration/test_hive_rig.py",
    "tests/contract/test_jail_backends.py",
    "tests/integration/test_provision_single.py",
    "tests/integration/test_api_fuzz.py",
    "tests/integration/test_hive.py",
    "tests/integration/test_provision.py",
    "tests/integration/test_audit_daemon.py",
    "tests/integration/test_chain.py",
    "tests/integration/test_bastille_lifecycle.py",
    "tests/integration/test_provision_local.py",
    "tests/integration/test_bastille_adopt.py",
    "tests/integration/test_runbooks.py",
    "tests/integration/test_hosts_ssh.py",
    "tests/integration/test_bw_answers.py",
    "tests/integration/test_fleet_liveness.py",
    "tests/integration/test_bastille_emulator.py",
    "tests/integration/test_cli_hostile.py",
)
"""The files that take longest (``--durations``, docs/PERFORMANCE.md), longest first: collected
first, so ``pytest -n auto --dist loadfile --no-loadscope-reorder`` (tests/run.sh) starts them
first and the short files fill in at the end, instead of a long file starting last."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test in tests/integration drives real programs: it is marked ``integration`` here,
    so ``-m 'not integration'`` is the unit layer (the contract's real backends are marked in
    tests/contract/conftest.py, the few unit tests that run a real program in their module).
    The slowest files go first (SLOWEST_FILES), each file's tests in their order."""
    for item in items:
        if item.path.is_relative_to(REPO / "tests/integration"):
            item.add_marker(pytest.mark.integration)
    rank = {REPO / name: number for number, name in enumerate(SLOWEST_FILES)}
    items.sort(key=lambda item: rank.get(item.path, len(rank)))  # stable: the rest keep their order
