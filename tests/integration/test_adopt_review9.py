"""Review of issue 9: a half-done adoption (Ctrl-C, or an undo that fails) and what release then
leaves in the foreign jail, on the real sandbox backend through the CLI.  Ported from the review's
probes (findings F3, F5): each test asserts what colibri should do.

    .venv/bin/pytest tests/integration/test_adopt_review9.py -q
"""

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
