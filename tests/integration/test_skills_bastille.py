"""Issue 13 on the bastille emulator: a refused skill (a community skill for a paid tenant, a skill
named like another tenant, a changed bundle) is refused before bastille is asked for anything:
no jail, the tenant as it was, exit 22."""

import json
from pathlib import Path

import pytest

from tests.conftest import Invoke
from tests.emulators.bastille.fixtures import BastilleEmulator, make_emulator
from tests.integration.skills_repo import SignedRepo, build_signed_repo

pytestmark = pytest.mark.integration


@pytest.fixture(name="signed", scope="module")
def signed_fixture(tmp_path_factory: pytest.TempPathFactory) -> SignedRepo:
    return build_signed_repo(tmp_path_factory.mktemp("signing-machine"))


@pytest.fixture(name="host")
def host_fixture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, signed: SignedRepo) -> BastilleEmulator:
    emu = make_emulator(tmp_path / "host", release=None)
    monkeypatch.setenv("PATH", emu.env["PATH"])
    monkeypatch.setenv("COLIBRI_JAIL_BACKEND", "bastille")
    monkeypatch.setenv("COLIBRI_BASTILLE_PREFIX", str(emu.prefix))
    monkeypatch.setenv("COLIBRI_BASTILLE_CONFIG", str(emu.conf_path))
    monkeypatch.setenv("COLIBRI_JAIL_IP_POOL", "10.17.91.0/24")
    monkeypatch.setenv("COLIBRI_SKILLS_REPOSITORY", str(signed.repo))
    yield emu
    emu.stop_all()


def test_refused_skills_create_no_bastille_jail(
    host: BastilleEmulator, invoke: Invoke, signed: SignedRepo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert invoke("skills", "trust", str(signed.root_pub))[0] == 0
    assert invoke("skills", "allow", "webtool", "--bundle", str(signed.webtool))[0] == 0
    for tenant in ("bee", "mail"):
        assert invoke("register-tenant", tenant, "--collection", "")[0] == 0
    damaged = signed.copy(tmp_path / "damaged")
    bundle = damaged / "bundles/mother-1.0.0.tar"
    bundle.write_bytes(bundle.read_bytes().replace(b"Turn a colibri jail", b"Turn a colibri JAIL"))
    cases = [
        ("a community skill for a paid tenant", signed.repo, ["--skill", "webtool"], "first-party skills only"),
        ("a skill named like another tenant", signed.repo, ["--skill", "mail"], "named like tenant mail"),
        ("a changed file (the mother's)", damaged, [], "mother"),
    ]
    for why, repo, args, said in cases:
        monkeypatch.setenv("COLIBRI_SKILLS_REPOSITORY", str(repo))
        code, _, err = invoke("spawn-agent", "bee", *args)
        assert code == 22 and said in err, (why, err)
        listed = json.loads(invoke("list-tenants", "--json")[1])["data"]
        assert {t["tenant_id"]: t["status"] for t in listed}["bee"] == "registered", why
        assert not (host.prefix / "jails" / "bee").exists(), why
        assert invoke("show-tenant", "bee", "--json")[0] == 0
