"""Review of issue 9: a half-done adoption (Ctrl-C, or an undo that fails) and what release then
leaves in the foreign jail, on the real sandbox backend through the CLI.  Ported from the review's
probes (findings F3, F5): each test asserts what colibri should do.

    .venv/bin/pytest tests/integration/test_adopt_review9.py -q
"""

from pathlib import Path

import pytest

from colibri.services.lifecycle.pipeline import SpawnService
from tests.conftest import Invoke
from tests.integration.test_adopt_release import adopt, foreign_jail, state, tree
from tests.integration.test_spawn import (  # noqa: F401  (the fixtures are used by name)
    sandbox_env,
    stop_all_jails,
    tenant,
)

pytestmark = pytest.mark.integration


def test_ctrl_c_during_an_adoption_then_rerun_then_release_leaves_nothing(
    invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    """services/spawn.py SpawnService._run_steps undoes an adoption on ColibriError only: a
    KeyboardInterrupt (Ctrl-C) after the socket mount but before
    the jail_created step is recorded leaves the tenant not adopted in the store and the record
    state_dir/adopted/<t>.json on disk.  The re-run is then a *new* adoption: _adopt_checked
    runs preflight again (the directories the first run made now exist, so they are not "created")
    and record.save() overwrites the first record.  release-agent then leaves colibri's
    directories (/var, /var/run, /var/run/colibri here) in the jail for good; on bastille the
    same clobbering loses ``enabled_mother`` (enable_service finds YES already) so
    colibri_mother_enable stays in the jail's rc.conf."""
    invoke("register-tenant", "demo", "--collection", "")
    root = foreign_jail()
    before = tree(root)
    real = SpawnService._ensure_socket_mount

    def interrupted(self: SpawnService, name: str) -> None:
        real(self, name)
        raise KeyboardInterrupt  # the operator's Ctrl-C, right after the mount

    monkeypatch.setattr(SpawnService, "_ensure_socket_mount", interrupted)
    code, _, err = adopt(invoke, root)
    assert code == 130  # "Aborted!": the documented exit of a Ctrl-C
    assert tenant(invoke, "demo")["adopted"] is False  # the store forgot it; the jail did not
    monkeypatch.setattr(SpawnService, "_ensure_socket_mount", real)

    code, _, err = adopt(invoke, root)  # the operator runs it again: it converges
    assert code == 0, err
    code, _, err = invoke("release-agent", "demo")
    assert code == 0, err
    from colibri.cli.context import Context

    Context().backend().stop("demo")
    left = sorted(set(tree(root)) - set(before))
    # Observed today: ['var 1000..:.. 40755', 'var/run ...', 'var/run/colibri ...'] left behind.
    assert left == [], left
    assert state("demo") == "stopped"


def test_release_after_the_tenant_renamed_var_run_leaves_no_mother_and_no_socket_mount(invoke: Invoke) -> None:
    """services/adoption.py withdraw decides whether the mother runs from `service colibri_mother
    status` (the jail's own pidfile) and Sandbox.umount finds the socket bind by its exact mount
    point in mountinfo.  Root in the jail renames /var/run (a mount point's parent can be renamed):
    status says "not running", so the mother is never stopped; umount drops the mounts.json line
    and reports "the socket mount on /var/run/colibri" as removed, but the live bind (now at
    /var/run.old/colibri) stays.  After release the jail still runs colibri's mother with a live
    rw bind of the host's agents/<tenant> directory, i.e. the daemon's socket for the tenant
    (release does not close it either), though colibri says it is out of the jail."""
    from colibri.cli.context import Context
    from tests.integration.test_adopt_release import stage
    from tests.integration.test_spawn import jail_ps

    invoke("register-tenant", "demo", "--collection", "")
    stage("demo")
    root = foreign_jail()
    code, _, err = adopt(invoke, root)
    assert code == 0, err
    backend = Context().backend()
    moved = backend.exec("demo", ["/bin/sh", "-c", "mv /var/run /var/run.old && mkdir /var/run"])
    assert moved.exit_code == 0, moved.err  # root in its own jail may do this

    code, out, err = invoke("release-agent", "demo")
    assert code == 0, err
    mother_left = "mother.py" in jail_ps("demo")
    init = backend._init_pid("demo")  # type: ignore[attr-defined]
    binds = Path(f"/proc/{init}/mountinfo").read_text()
    socket_left = [ln for ln in binds.splitlines() if "/colibri" in ln.split()[4]]
    # Observed today: the mother still runs, and a bind on /var/run.old/colibri is still live,
    # while release said: "removed: ..., the socket mount on /var/run/colibri, ...".
    assert not mother_left and socket_left == [], (out, socket_left)


def test_release_with_a_flooding_rc_stop_still_stops_the_mother(invoke: Invoke) -> None:
    """A sibling of review9 F1: the jail's rc.d ``stop`` floods its output (CommandFailed over the
    runner's cap); release does not fail on it but stops the mother by its pids."""
    from colibri.cli.context import Context
    from tests.integration.test_adopt_release import stage
    from tests.integration.test_spawn import jail_ps

    invoke("register-tenant", "demo", "--collection", "")
    stage("demo")
    root = foreign_jail()
    code, _, err = adopt(invoke, root)
    assert code == 0, err
    script = root / "etc/rc.d/colibri_mother"
    first, rest = script.read_text().split("\n", 1)
    flood = "case \"$1\" in\nstop) head -c 5000000 /dev/zero | tr '\\\\0' x; exit 0 ;;\nesac\n"
    script.write_text(first + "\n" + flood + rest)  # what root in the jail may do
    code, out, err = invoke("release-agent", "demo")
    assert code == 0, err
    assert "mother.py" not in jail_ps("demo"), out
    Context().backend().stop("demo")
