"""Issue 9 defects 4-6 on the sandbox backend, through the CLI: adopting a jail checks everything
before it changes anything and undoes what it did when it fails; release-agent takes out exactly
what colibri added and says so; reconcile --apply fails (exit 18) when a repair fails.

The mother is the stand-in of test_spawn.py (it only stays up); the bastille side of the same
defects is in test_bastille_adopt.py.
"""

import json
import os
from pathlib import Path

import pytest

from colibri.adapters.jail import UID_BLOCK, Mount
from colibri.adapters.sandbox import userns
from tests.conftest import Invoke
from tests.integration.test_spawn import (  # noqa: F401  (the fixtures are used by name)
    _jails,
    jail_ps,
    sandbox_env,
    stop_all_jails,
    tenant,
)

pytestmark = pytest.mark.integration

BASE = 1_000_000_000 + 12_345 * UID_BLOCK  # the foreign jail's own block of ids


def foreign_jail(*, home: bool = True, user: bool = True) -> Path:
    """A jail colibri did not create, prepared for an agent (passwd, home, rc scripts), on its own
    block of ids and stopped: what an operator brings to ``spawn-agent --jail-name/--jail-root``."""
    from colibri.cli.context import Context

    root = Context().backend().root("demo")
    (root / "etc").mkdir(parents=True)
    agent = "agent:x:1001:1001::/home/agent:/bin/sh\n" if user else ""
    (root / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\n" + agent)
    # dev and proc: the mount points bwrap makes at a jail's first start (this one ran before)
    for rel in ("etc/rc.d", "usr/local", "tmp", "dev", "proc", *(("home/agent",) if home else ("home",))):
        (root / rel).mkdir(parents=True, exist_ok=True)
    (root / "etc/rc").write_text((_jails() / "agent/sandbox/etc/rc").read_text())
    (root / "etc/rc.d/colibri_mother").write_text((_jails() / "agent/sandbox/etc/rc.d/colibri_mother").read_text())
    (root / "etc/rc.d/colibri_mother").chmod(0o755)
    for top in ("bin", "lib", "lib64", "sbin"):
        if Path("/" + top).is_symlink():
            (root / top).symlink_to(Path("/" + top).readlink())
    userns.shift_tree(root, BASE)
    return root


def tree(root: Path) -> list[str]:
    """Every path under the jail root (what an adoption may have changed), with owner and mode."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        for entry in sorted(dirnames + filenames):
            path = Path(dirpath) / entry
            st = path.lstat()
            out.append(f"{path.relative_to(root)} {st.st_uid}:{st.st_gid} {st.st_mode:o}")
    return sorted(out)


def adopt(invoke: Invoke, root: Path) -> tuple[int, str, str]:
    return invoke("spawn-agent", "demo", "--jail-name", "demo", "--jail-root", str(root))


def live(name: str) -> bool:
    from colibri.cli.context import Context

    context = Context()
    return context.backend().is_mounted(name, Mount(context.settings.run_dir / "agents" / name, "/var/run/colibri"))


def state(name: str) -> str:
    from colibri.cli.context import Context

    return Context().backend().info(name).state.value


def stage(name: str) -> None:
    """A root-only provider.env in place of a vault, so provisioning writes the jail's .env."""
    from colibri.cli.context import Context

    folder = Context().settings.staged_dir / name
    folder.mkdir(parents=True, mode=0o700)
    folder.parent.chmod(0o700)
    (folder / "provider.env").write_text("OPENROUTER_API_KEY=sk-or-staged\n")
    (folder / "provider.env").chmod(0o600)


@pytest.mark.parametrize("missing", ["home", "user", "symlink"])
def test_an_adoption_that_cannot_work_is_refused_before_anything_changes(invoke: Invoke, missing: str) -> None:
    invoke("register-tenant", "demo", "--collection", "")
    root = foreign_jail(home=missing != "home", user=missing != "user")
    if missing == "symlink":  # colibri would write its identity through it, outside the jail
        (root / "usr/local/etc").symlink_to("/etc")
    before = tree(root)
    code, _, err = adopt(invoke, root)
    assert code == 11, err
    expected = {"home": "the agent's home /home/agent", "user": "user agent is missing", "symlink": "usr/local/etc"}
    assert expected[missing] in err
    assert tree(root) == before  # no mount point, no file, nothing chowned
    assert not (root.parent / "mounts.json").exists() and state("demo") == "stopped"
    record = tenant(invoke, "demo")
    assert (record["status"], record["adopted"], record["uid_base"], record["backend"]) == ("failed", False, None, None)
    assert invoke("destroy-agent", "demo", "--yes")[0] == 0  # nothing to destroy: the jail is not colibri's
    assert root.exists()


def test_an_adoption_failing_late_is_undone(invoke: Invoke, sandbox_env: Path) -> None:  # noqa: F811
    invoke("register-tenant", "demo", "--collection", "")
    stage("demo")
    root = foreign_jail()
    before = tree(root)
    (sandbox_env / "mother/mother.py").write_text("import sys\nsys.exit('refusing: no thanks')\n")
    code, _, err = adopt(invoke, root)
    assert code == 17 and "refusing: no thanks" in err, err  # MotherNotReady
    # the mount, the files, the .env and the start are undone: the jail is as it was
    assert state("demo") == "stopped" and json.loads((root.parent / "mounts.json").read_text()) == []
    assert tree(root) == before
    record = tenant(invoke, "demo")
    assert (record["status"], record["adopted"], record["uid_base"]) == ("failed", False, None)
    assert record["jail_root"] is None
    from colibri.cli.context import Context

    assert not (Context().settings.state_dir / "adopted" / "demo.json").exists()


def test_release_takes_out_exactly_what_colibri_added(invoke: Invoke) -> None:
    invoke("register-tenant", "demo", "--collection", "")
    stage("demo")
    root = foreign_jail()
    (root / "usr/local/etc/colibri").mkdir(parents=True)  # the operator's, before colibri came
    os.chown(root / "usr/local/etc/colibri", BASE, BASE)
    before = tree(root)
    code, _, err = adopt(invoke, root)
    assert code == 0, err
    assert (root / "home/agent/.env").stat().st_mode & 0o777 == 0o600 and live("demo")
    assert "mother.py" in jail_ps("demo")
    rotated = root / "var/log/colibri_mother.log.0.bz2"  # as newsyslog would have left it
    rotated.write_bytes(b"BZh9")
    os.chown(rotated, BASE, BASE)
    code, out, err = invoke("release-agent", "demo", "--json")
    assert code == 0, err
    removed = json.loads(out)["data"]["removed"]
    for item in (
        "the mother (stopped)",
        "the socket mount on /var/run/colibri",
        "/usr/local/etc/colibri/agent.json",
        "/home/agent/.env",
        "/usr/local/share/colibri/skills/mother",
        "/var/log/colibri_mother.log.0.bz2",
    ):
        assert item in removed
    assert "/usr/local/etc/colibri/" not in removed  # the operator's directory stays
    assert state("demo") == "running" and not live("demo") and "mother.py" not in jail_ps("demo")
    assert tree(root) == before  # nothing of colibri's is left, and nothing of the jail's went
    assert json.loads((root.parent / "mounts.json").read_text()) == []
    record = tenant(invoke, "demo")
    assert (record["status"], record["adopted"], record["jail_root"]) == ("registered", False, None)
    assert invoke("release-agent", "demo")[0] == 5  # released: nothing adopted any more
    from colibri.cli.context import Context

    Context().backend().stop("demo")


def test_reconcile_apply_fails_when_a_repair_fails(invoke: Invoke) -> None:
    from colibri.cli.context import Context

    for name in ("ant", "bee"):
        invoke("register-tenant", name, "--collection", "")
    assert invoke("spawn-agent", "ant", "bee")[0] == 0
    backend = Context().backend()
    for name in ("ant", "bee"):
        backend.stop(name)  # behind colibri's back
    mother = backend.root("bee") / "usr/local/share/colibri/skills/mother/mother.py"
    mother.write_text("import sys\nsys.exit('refusing: broken on purpose')\n")  # bee's repair will fail
    code, out, _ = invoke("reconcile", "--apply", "--json")
    assert code == 18
    document = json.loads(out)
    assert document["ok"] is False and document["error"]["type"] == "RepairFailed"
    assert document["error"]["code"] == 18 and "stopped_jail bee" in document["error"]["message"]
    items = {d["jail"]: d for d in document["data"]}
    assert items["ant"]["applied"] is True and items["ant"]["error"] is None
    assert items["bee"]["applied"] is False and "refusing: broken on purpose" in items["bee"]["error"]
    backend.stop("bee")
    code, out, err = invoke("reconcile", "--apply")
    assert code == 18
    assert "failed: " in out and "bee" in out  # the table names the failing item
    assert err.startswith("colibri: 1 of 1 repairs failed: stopped_jail bee: ")


def test_a_socket_mount_gone_from_a_running_jail_is_drift(invoke: Invoke) -> None:
    from colibri.cli.context import Context

    invoke("register-tenant", "demo", "--collection", "")
    assert invoke("spawn-agent", "demo")[0] == 0
    assert invoke("reconcile") == (0, "no drift\n", "")
    backend = Context().backend()
    config = backend.root("demo").parent / "mounts.json"
    configured = config.read_text()
    assert backend.umount("demo", "/var/run/colibri") and not live("demo")
    config.write_text(configured)  # the configured bind is back, behind colibri's back: not live
    code, out, _ = invoke("reconcile", "--json")
    assert code == 0 and [d["kind"] for d in json.loads(out)["data"]] == ["unmounted_socket"]
    code, out, _ = invoke("reconcile", "--apply", "--json")
    assert code == 0 and json.loads(out)["data"][0]["applied"] is True
    assert live("demo") and "mother.py" in jail_ps("demo")
    assert invoke("reconcile") == (0, "no drift\n", "")
