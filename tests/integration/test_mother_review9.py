"""Review of issue 9 (hostile tenant vs the mother's start and readiness), on the real sandbox
backend through the CLI.  Ported from the review's probes (findings F1, F2): each test asserts
what colibri should do.


    .venv/bin/pytest tests/integration/test_mother_review9.py -q

A "tenant" here is code running as root inside its own jail: it may rewrite anything under its
jail root (its rc.d script, its mother log), which the test does from the host side.
"""

import os
import time
from pathlib import Path

import pytest

from tests.conftest import Invoke
from tests.integration.test_spawn import (  # noqa: F401  (the fixtures are used by name)
    sandbox_env,
    stop_all_jails,
    tenant,
)

pytestmark = pytest.mark.integration

HOSTILE_STATUS = """\
case "$1" in
status) head -c 5000000 /dev/zero | tr '\\0' x; exit 0 ;;
esac
"""
"""Prepended to the jail's own rc.d/colibri_mother: `status` floods stdout (over the runner's
4 MiB cap); start/stop stay as shipped.  A `sleep 40` there (past the 30 s exec timeout) gives
the same result through CommandTimeout, only slower."""


def _state(name: str) -> str:
    from colibri.cli.context import Context

    return Context().backend().info(name).state.value


def _root(invoke: Invoke, name: str) -> Path:
    return Path(str(tenant(invoke, name)["jail_root"]))


def _tamper_rc(root: Path) -> None:
    script = root / "etc/rc.d/colibri_mother"
    text = script.read_text()
    first, rest = text.split("\n", 1)
    script.write_text(first + "\n" + HOSTILE_STATUS + rest)


def test_start_agent_with_a_hostile_status_leaves_no_running_jail_behind(invoke: Invoke) -> None:
    """services/jails.py JailService._start_agent stops a jail it started only on MotherNotReady;
    a `service colibri_mother status` that times out (CommandTimeout, exit 14) or floods its output
    (CommandFailed, exit 10) propagates past it: the jail runs while the tenant says `stopped`,
    the very drift issue 9 defect 2 was about.  reconcile then reports running_jail."""
    invoke("register-tenant", "demo", "--collection", "")
    assert invoke("spawn-agent", "demo")[0] == 0
    assert invoke("stop-agent", "demo")[0] == 0
    _tamper_rc(_root(invoke, "demo"))  # what root in the jail could have done while it ran

    code, _, err = invoke("start-agent", "demo")
    status, state = tenant(invoke, "demo")["status"], _state("demo")
    # Observed today: code 10 ("output too large (killed)"), status stopped, state running.
    assert code != 0, err
    assert (status, state) in (("stopped", "stopped"), ("failed", "stopped")), (code, err, status, state)


def test_a_running_ready_mother_with_a_big_log_is_left_alone(
    invoke: Invoke,
    monkeypatch: pytest.MonkeyPatch,
    sandbox_env: Path,  # noqa: F811  (the fixture, by name)
) -> None:
    """services/spawn.py _read_log reads the FIRST 1 MiB of var/log/colibri_mother.log
    (jailfs.read_file cuts, it does not tail), while newsyslog rotates the log only at 1024 KiB,
    hourly.  Past 1 MiB every new line is invisible: start_mother finds no ready line of the
    current pid, stops a healthy mother, starts it again and then waits for a ready line it can
    never read -> MotherNotReady (exit 17) and the mother stopped.  A tenant's mother that logs
    1 MiB (or the tenant itself) turns every start-agent / reconcile --apply of it into a
    15 s wait and an outage."""
    import colibri.services.lifecycle.mother as spawn

    monkeypatch.setattr(spawn, "MOTHER_READY_TIMEOUT", 3.0)
    # A stand-in that says its ready line as skills/mother does, with its pid: only then is a
    # running mother known to be ready (and left alone).
    stand_in = sandbox_env / "mother/mother.py"
    stand_in.write_text(
        stand_in.read_text().replace('print("ready:', "print(f\"mother[{__import__('os').getpid()}]: ready:")
    )
    invoke("register-tenant", "demo", "--collection", "")
    assert invoke("spawn-agent", "demo")[0] == 0
    root = _root(invoke, "demo")
    log = root / "var/log/colibri_mother.log"
    old = log.read_bytes()
    st = log.stat()
    # An older, noisy history first (1.5 MiB of ordinary lines), then what the mother said.
    log.write_bytes(b"mother[1]: handled a task\n" * 60_000 + old)
    os.chown(log, st.st_uid, st.st_gid)
    pid_before = (root / "var/run/colibri_mother_child.pid").read_text().strip()

    started = time.monotonic()
    code, _, err = invoke("start-agent", "demo")  # the tenant is active: "nothing to do"
    took = time.monotonic() - started
    pid_after = (root / "var/run/colibri_mother_child.pid").read_text().strip() if code == 0 else "gone"
    # Observed today: code 17 "did not say it was ready within 3 s (stopped again)".
    assert code == 0, err
    assert pid_after == pid_before and took < 2.0
