"""Issue 13 on the sandbox backend: a paid tenant spawns with only signed first-party skills (the
repository built with colibri's own commands, the real mother registering with a real daemon),
and the refusals (a community skill for a paid tenant, a skill named like another tenant, a
changed bundle) leave no jail; an unreachable repository never breaks the running agent."""

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, require
from tests.integration.hive_harness import listening, wait_for
from tests.integration.skills_repo import SignedRepo, build_signed_repo

pytestmark = pytest.mark.integration


@pytest.fixture(name="signed", scope="module")
def signed_fixture(tmp_path_factory: pytest.TempPathFactory) -> SignedRepo:
    return build_signed_repo(tmp_path_factory.mktemp("signing-machine"))


class Host:
    def __init__(self, base: Path, env: dict[str, str]) -> None:
        self.base, self.env = base, env

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "colibri", *args], env=self.env, capture_output=True, text=True, cwd=REPO,
            check=False, timeout=240,
        )  # fmt: skip

    def ok(self, *args: str) -> Any:
        done = self.run(*args, "--json")
        assert done.returncode == 0, f"{args}: rc {done.returncode}\n{done.stdout}\n{done.stderr}"
        try:
            return json.loads(done.stdout)["data"]
        except json.JSONDecodeError:  # spawn-agent: one JSON object a line, its steps, then the outcome
            return json.loads(done.stdout.strip().splitlines()[-1])

    def jail(self, tenant: str) -> Path:
        return self.base / "state" / "sandbox" / tenant


@pytest.fixture(name="host")
def host_fixture(tmp_path: Path, signed: SignedRepo) -> Iterator[Host]:
    require(shutil.which("bwrap") is not None, "bubblewrap")
    require(os.geteuid() == 0, "root")
    (tmp_path / "colibri.toml").write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COLIBRI_", "BW_", "BITWARDENCLI_"))}
    env |= {
        "COLIBRI_CONFIG": str(tmp_path / "colibri.toml"), "COLIBRI_STATE_DIR": str(tmp_path / "state"),
        "COLIBRI_RUN_DIR": str(tmp_path / "run"), "COLIBRI_LOG_DIR": str(tmp_path / "log"),
        "COLIBRI_SANDBOX_DIR": str(tmp_path / "state" / "sandbox"), "COLIBRI_JAIL_BACKEND": "sandbox",
        "COLIBRI_SKILLS_REPOSITORY": str(signed.repo), "COLIBRI_HEARTBEAT_INTERVAL": "0.5",
        "COLIBRI_RECONCILE_INTERVAL": "0",
    }  # fmt: skip
    host = Host(tmp_path, env)
    host.ok("skills", "trust", str(signed.root_pub))
    yield host
    listed = host.run("list-tenants", "--json")
    for tenant in json.loads(listed.stdout)["data"] if listed.returncode == 0 else []:
        if tenant["status"] != "registered":
            host.run("destroy-agent", tenant["tenant_id"], "--yes")


def test_a_paid_tenant_spawns_with_signed_first_party_skills_and_its_mother_registers_them(host: Host) -> None:
    assert host.ok("register-tenant", "acme", "--collection", "")["tier"] == "paid"  # the default
    log = (host.base / "daemon.log").open("w")
    daemon = subprocess.Popen([sys.executable, "-m", "colibri", "daemon"], env=host.env, cwd=REPO,
                              stdout=subprocess.DEVNULL, stderr=log)  # fmt: skip
    try:
        wait_for("the admin socket", lambda: listening(host.base / "run" / "admin.sock"), 30)
        host.ok("spawn-agent", "acme", "--skill", "mail", "--capability", "mail.send", "--capability", "echo")
        shown = host.ok("show-tenant", "acme")
        assert [(s["name"], s["version"], s["source"]) for s in shown["skills"]] == [
            ("mail", "1.0.0", "first-party"),
            ("mother", "1.0.0", "first-party"),  # the repository's signed mother, not the builtin one
        ]
        root = host.jail("acme") / "root"
        skill = root / "usr/local/share/colibri/skills/mail"
        handler = skill / "handlers/mail.send"
        assert handler.is_file() and (skill / "MANIFEST.json").is_file()
        agent_uid = shown["agent_uid"]
        for path in (skill, handler, skill / "MANIFEST.json"):
            st = path.lstat()
            assert st.st_uid != agent_uid and not st.st_mode & 0o022, path  # the jail's root's, read-only to it
        agents = wait_for("the mother to register", lambda: host.ok("agents", "--tenant", "acme") or None)
        assert agents[0]["state"] == "active"
        assert sorted(c["name"] for c in agents[0]["capabilities"]) == ["echo", "mail.send"]
        task = host.ok("submit-task", "mail.send", "--tenant", "acme", "--payload", "{}", "--wait")
        assert task["state"] == "succeeded" and task["result"] == {"sent": True}, task
        # the repository gone (unreachable): the running agent and a re-run are untouched, new installs blocked
        host.env["COLIBRI_SKILLS_REPOSITORY"] = str(host.base / "gone")
        again = host.run("spawn-agent", "acme")
        assert again.returncode == 0, again.stderr  # installed skills are checked, not fetched
        host.ok("stop-agent", "acme")
        host.ok("start-agent", "acme")
        more = host.run("spawn-agent", "acme", "--skill", "mail", "--skill", "webtool")
        assert more.returncode == 22 and "webtool" in more.stderr, more.stderr
        assert host.ok("show-tenant", "acme")["status"] == "active"
        actions = [e["action"] for e in host.ok("audit", "log", "--tenant", "acme", "--limit", "1000")]
        assert actions.count("skill.install") == 2 and "skill.refuse" in actions
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=20)
        finally:
            if daemon.poll() is None:
                daemon.kill()
                daemon.wait()
            log.close()


def test_refused_skills_leave_no_jail(host: Host, signed: SignedRepo) -> None:
    host.ok("register-tenant", "bee", "--collection", "")
    host.ok("skills", "allow", "webtool", "--bundle", str(signed.webtool))
    cases = {
        "a community skill for a paid tenant": (["--skill", "webtool"], "paid tenant gets first-party skills only"),
        "a skill no index holds": (["--skill", "nosuch"], "not in the first-party index"),
    }
    host.ok("register-tenant", "mail", "--collection", "")  # a tenant named like the skill
    cases["a skill named like another tenant"] = (["--skill", "mail"], "named like tenant mail")
    for why, (args, said) in cases.items():
        done = host.run("spawn-agent", "bee", *args)
        assert done.returncode == 22 and said in done.stderr, (why, done.stderr)
        assert not host.jail("bee").exists(), why
        assert host.ok("show-tenant", "bee")["status"] == "registered", why
    damaged = signed.copy(host.base / "damaged")
    bundle = damaged / "bundles/mother-1.0.0.tar"
    bundle.write_bytes(bundle.read_bytes().replace(b"Turn a colibri jail", b"Turn a colibri JAIL"))
    host.env["COLIBRI_SKILLS_REPOSITORY"] = str(damaged)
    done = host.run("spawn-agent", "bee")  # the mother's bundle changed after signing
    assert done.returncode == 22 and "mother" in done.stderr, done.stderr
    assert not host.jail("bee").exists()
    host.ok("set-tier", "bee", "community")
    host.env["COLIBRI_SKILLS_REPOSITORY"] = str(signed.repo)
    host.ok("spawn-agent", "bee", "--skill", "webtool", "--capability", "web.fetch")
    sources = {s["name"]: s["source"] for s in host.ok("show-tenant", "bee")["skills"]}
    assert sources == {"mother": "first-party", "webtool": "community"}
    back = host.run("set-tier", "bee", "paid")  # never silently narrowed with a community skill in the jail
    assert back.returncode == 5 and "webtool" in back.stderr, back.stderr
