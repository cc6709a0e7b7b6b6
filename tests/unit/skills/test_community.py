"""Community skills (issue 13): allowed by the operator, pinned by digest, never for a paid tenant."""

import json
from pathlib import Path

import pytest

from colibri.errors import BundleRefused, Conflict, SupplyError, TierRefused
from colibri.services.skills.host import SkillsService
from colibri.services.skills.resolve import SkillRef
from colibri.store.db import Store
from tests.conftest import Invoke
from tests.unit.skills.forge import Forge, skill_dir


@pytest.fixture(name="forge")
def forge_fixture(tmp_path: Path) -> Forge:
    return Forge(tmp_path)


@pytest.fixture(name="service")
def service_fixture(forge: Forge, tmp_path: Path) -> SkillsService:
    store = Store(f"sqlite:///{tmp_path / 'colibri.db'}")
    return SkillsService(store, forge.trust, forge.repo, forge.now)


def test_a_community_tenant_gets_an_allowed_skill_a_paid_tenant_never(forge: Forge, service: SkillsService) -> None:
    forge.publish(forge.bundle("mail"))
    allowed = service.allow("weather", forge.bundle("weather"), None)
    assert allowed["source"] == "community"
    [skill] = forge.resolver().resolve(
        [SkillRef("weather", None)], tier="community", other_tenants=[], staging=forge.staging
    )
    assert (skill.source, skill.digest) == ("community", allowed["digest"])
    assert (skill.root / "SKILL.md").read_text() == "# weather\n"
    other = forge.base / "other"
    other.mkdir()
    with pytest.raises(
        TierRefused, match="skill weather is a community skill: a paid tenant gets first-party skills only"
    ):
        forge.resolver().resolve(
            [SkillRef("mail", None), SkillRef("weather", None)], tier="paid", other_tenants=[], staging=other
        )
    assert list(other.iterdir()) == []
    assert [s["source"] for s in service.listing()["skills"]] == ["first-party", "community"]


def test_the_pinned_digest_is_checked_at_allow_and_at_install(forge: Forge, service: SkillsService) -> None:
    forge.publish(forge.bundle("mail"))
    data = forge.bundle("weather")
    with pytest.raises(SupplyError, match="not the sha256:00"):
        service.allow("weather", data, "sha256:" + "0" * 64)
    with pytest.raises(BundleRefused, match="outside the skill's directory"):
        service.allow("other", data, None)
    digest = service.allow("weather", data, None)["digest"]
    with pytest.raises(Conflict, match="allowed with another digest"):
        service.allow("weather", forge.bundle("weather", files={"SKILL.md": "changed\n"}), None)
    stored = forge.trust.directory / "community" / (digest.removeprefix("sha256:") + ".tar")
    stored.write_bytes(stored.read_bytes().replace(b"# weather", b"# WEATHER"))
    with pytest.raises(BundleRefused, match="not the one the operator allowed"):
        forge.resolver().resolve([SkillRef("weather", None)], tier="community", other_tenants=[], staging=forge.staging)
    assert list(forge.staging.iterdir()) == []


def test_unknown_tier_is_refused(forge: Forge) -> None:
    with pytest.raises(SupplyError, match="unknown tenant tier"):
        forge.resolver().resolve([SkillRef("mail", None)], tier="gold", other_tenants=[], staging=forge.staging)


def test_allow_through_the_cli_records_its_entry(
    invoke: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, _ = invoke("skills", "build", str(skill_dir(tmp_path, "weather")), "--version", "0.1.0", "--json")
    assert code == 0
    digest = json.loads(out)["data"]["digest"]
    code, out, _ = invoke("skills", "allow", "weather", "--bundle", "weather-0.1.0.tar", "--digest", digest)
    assert (code, out) == (0, f"community skill weather@0.1.0: allowed ({digest})\n")
    code, out, _ = invoke("skills", "list", "--json")
    assert [(s["name"], s["source"]) for s in json.loads(out)["data"]["skills"]] == [("weather", "community")]
    code, out, _ = invoke("audit", "log", "--json")
    entries = [e for e in json.loads(out)["data"] if e["action"] == "skills.allow"]
    assert [e["subject"] for e in entries] == ["skill:weather"]
