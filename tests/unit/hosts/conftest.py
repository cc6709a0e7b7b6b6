"""A hive of three hosts in one process: the orchestrator ("testhost", the CLI under test) and
two hosts ("osa", "domedog"), each with its own fake jails, run and state directories and its
own colibri context (its settings.host), all on one store file (as every host of a hive shares
one PostgreSQL database).  The orchestrator reaches a host through tests/fakes/hostlink.py,
which serves that host's real lifecycle op table through JSON."""

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from colibri.cli.context import Adapters, Context
from colibri.services.hosts.ops import version_report
from colibri.services.lifecycle.placement import HostReach
from colibri.settings import Settings
from colibri.store.orchestrator import OrchestratorRecord
from tests.fakes.hostlink import FakeHostLink
from tests.fakes.jail import FakeJails

REMOTES = ("osa", "domedog")
SECRET = "sk-live-7f3a9c2e41d8b6"
"""The tenant's provider key in these tests: it may appear only where the brief allows it."""


ROOT = os.geteuid() == 0


class HostJails(FakeJails):
    """The fake backend under a real backend's name, so the .env rules of a real jail apply.
    As root it is the sandbox (the jail's ids shifted onto the tenant's block); as another user
    a bastille-like jail whose agent user is the caller (only root can give a file away)."""

    name = "sandbox" if ROOT else "bastille"

    def _build(self, name: str, *, rc_script: bool = True) -> None:
        super()._build(name, rc_script=rc_script)
        if not ROOT:
            passwd = f"root:*:0:0::/root:/bin/sh\nagent:*:{os.getuid()}:{os.getgid()}::/home/agent:/bin/sh\n"
            (self.root(name) / "etc/passwd").write_text(passwd)


@dataclass
class Remote:
    name: str
    fake: HostJails
    context: Context
    link: FakeHostLink
    root: Path


@dataclass
class Hive:
    base: Path
    url: str
    orchestrator: HostJails
    remotes: dict[str, Remote]
    capsys: pytest.CaptureFixture[str]
    reached: list[HostReach] = field(default_factory=list)

    def link(self, reach: HostReach) -> FakeHostLink:
        self.reached.append(reach)
        return self.remotes[reach.name].link

    def cli(self, *args: str) -> tuple[int, str, str]:
        from colibri.cli.app import run

        self.capsys.readouterr()
        code = run(list(args), adapters=Adapters(jail_backend=self.orchestrator, host_links=self.link))
        captured = self.capsys.readouterr()
        return code, captured.out, captured.err

    def enrol(self, name: str, *, address: str | None = "192.0.2.10") -> None:
        """As ``colibri hosts add`` on the orchestrator does: the row in the shared database, and
        the pin in the orchestrator's own record (``address`` None: a host without SSH reach)."""
        from colibri.services.hosts.reach import pin_of
        from colibri.store.hosts import HostRepo
        from colibri.store.models import Host

        host = Host(
            name=name,
            ssh_user="colibri" if address else None,
            address=address,
            port=22,
            host_keys="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOfakeKeyForTestsOnly" if address else None,
            command="colibri",
        )
        with self.record().change() as draft, self.remotes["osa"].context.store.session() as session:
            HostRepo(session).add(host)
            draft.hosts[name] = pin_of(host)

    def record(self) -> OrchestratorRecord:
        """The orchestrator's own record (its state_dir, as the CLI under test has it)."""
        return OrchestratorRecord(self.base / "colibri-home/db", "testhost")

    def show(self, tenant: str) -> dict[str, object]:
        code, out, err = self.cli("show-tenant", tenant, "--json")
        assert code == 0, err
        record: dict[str, object] = json.loads(out)["data"]
        return record

    def stage(self, tenant: str, text: str) -> None:
        """A root-only provider.env on the orchestrator (the source that needs no vault)."""
        staged = self.base / "colibri-home/db/staged"
        staged.mkdir(mode=0o700, parents=True, exist_ok=True)
        staged.chmod(0o700)
        (staged / tenant).mkdir(mode=0o700, exist_ok=True)
        path = staged / tenant / "provider.env"
        path.write_text(text)
        path.chmod(0o600)

    def stored_text(self) -> str:
        """Every row of every table of the hive's database, as text (to scan for a value)."""
        from sqlalchemy import MetaData, select

        store = self.remotes["osa"].context.store
        metadata = MetaData()
        metadata.reflect(store.engine)
        with store.engine.connect() as conn:
            return "\n".join(str(row) for table in metadata.sorted_tables for row in conn.execute(select(table)))

    def env_of(self, host: str, tenant: str) -> Path:
        return self.remotes[host].fake.root(tenant) / "home/agent/.env"


def _isolated_settings(monkeypatch: pytest.MonkeyPatch, **values: object) -> Settings:
    """A host's own settings: the orchestrator's COLIBRI_* environment (which wins over init
    values) is out of the way while they are built."""
    with monkeypatch.context() as scoped:
        for name in list(os.environ):
            if name.startswith("COLIBRI_"):
                scoped.delenv(name)
        return Settings(**values)  # type: ignore[arg-type]


def skills(base: Path) -> Path:
    folder = base / "skills"
    (folder / "mother/handlers").mkdir(parents=True, exist_ok=True)
    (folder / "mother/mother.py").write_text("# the fake's jails run their own mother\n")
    echo = folder / "mother/handlers/echo"
    echo.write_text("#!/bin/sh\ncat\n")
    echo.chmod(0o755)
    return folder


@pytest.fixture(name="hive")
def hive_fixture(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], db_url: str
) -> Iterator[Hive]:
    """Every host on one database: SQLite, and a real PostgreSQL server (as a hive runs)."""
    url = db_url
    folder = skills(tmp_path)
    monkeypatch.setenv("COLIBRI_DATABASE_URL", url)
    monkeypatch.setenv("COLIBRI_SKILLS_DIR", str(folder))
    monkeypatch.setenv("COLIBRI_SECRETS_ALLOWED_ROOTS", json.dumps([str(tmp_path / "testhost-jails")]))
    host_ids = ROOT
    remotes: dict[str, Remote] = {}
    for name in REMOTES:
        root = tmp_path / name
        fake = HostJails(root / "jails", host_ids=host_ids)
        settings = _isolated_settings(
            monkeypatch,
            host=name,
            state_dir=root / "db",
            run_dir=root / "run",
            log_dir=root / "log",
            database_url=url,
            skills_dir=folder,
            secrets_allowed_roots=[root / "jails"],
        )
        context = Context(adapters=Adapters(jail_backend=fake), _settings=settings)
        ops = {**context.remote_ops(), "version": lambda _args, s=settings: version_report(s)}  # as remote serve
        remotes[name] = Remote(name, fake, context, FakeHostLink(name, ops), root)
    hive = Hive(tmp_path, url, HostJails(tmp_path / "testhost-jails", host_ids=host_ids), remotes, capsys)
    yield hive
    for remote in remotes.values():
        remote.context.close()
