"""``colibri skills`` through the real main path: the signing machine's build → sign → delegate →
publish, a host's trust → list → show → verify, and the key-rotation drill (runbooks/skills.md)."""

import json
from pathlib import Path

import pytest

from tests.conftest import Invoke
from tests.unit.skills.forge import skill_dir


@pytest.fixture(name="work")
def work_fixture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "repo").mkdir()
    monkeypatch.setenv("COLIBRI_SKILLS_REPOSITORY", str(tmp_path / "repo"))
    return tmp_path


def ok(invoke: Invoke, *args: str) -> dict:  # type: ignore[type-arg]
    code, out, err = invoke(*args, "--json")
    assert code == 0, (args, out, err)
    return json.loads(out)["data"]  # type: ignore[no-any-return]


def actions(invoke: Invoke) -> list[str]:
    return [e["action"] for e in ok(invoke, "audit", "log") if e["action"].startswith("skills.")]


def test_build_sign_publish_trust_list_show_verify(invoke: Invoke, work: Path) -> None:
    root = ok(invoke, "skills", "keygen", "root.key")
    signer = ok(invoke, "skills", "keygen", "k1.key")
    assert (work / "root.key").stat().st_mode & 0o777 == 0o600
    assert invoke("skills", "keygen", "k1.key")[0] == 5  # never over an existing key
    built = ok(invoke, "skills", "build", str(skill_dir(work, "mail")), "--version", "1.0.0", "--capability", "echo")
    assert built["bundle"] == "mail-1.0.0.tar" and built["files"] == 2
    assert ok(invoke, "skills", "sign", "mail-1.0.0.tar", "--key", "k1.key")["key_id"] == signer["key_id"]
    delegated = ok(invoke, "skills", "delegate", "k1.key.pub", "--repo", "repo", "--root-key", "root.key")
    assert delegated == {"key_id": signer["key_id"], "root_version": 1, "days": 365}
    published = ok(invoke, "skills", "publish", "mail-1.0.0.tar", "--repo", "repo", "--key", "k1.key")
    assert published["index_version"] == 1 and published["published"][0]["digest"] == built["digest"]

    unpinned = ok(invoke, "skills", "list")
    assert unpinned["skills"] == [] and "no skills root key is pinned" in unpinned["reason"]
    assert ok(invoke, "skills", "trust", "root.key.pub") == {"root_key": root["key_id"], "changed": True}
    assert ok(invoke, "skills", "trust", "root.key.pub")["changed"] is False
    assert invoke("skills", "trust", "k1.key.pub")[0] == 5  # another root: only with --replace
    listed = ok(invoke, "skills", "list")
    assert (listed["index_version"], listed["fresh"], listed["expired"]) == (1, True, False)
    assert [(s["name"], s["version"], s["source"]) for s in listed["skills"]] == [("mail", "1.0.0", "first-party")]
    code, out, err = invoke("skills", "list")
    assert code == 0 and out.split()[:5] == ["SKILL", "VERSION", "SOURCE", "CAPABILITIES", "DIGEST"]
    assert "index version 1, valid until" in err
    shown = ok(invoke, "skills", "show", "mail")
    assert shown["versions"][0]["digest"] == built["digest"]
    assert invoke("skills", "show", "post")[0] == 4
    [verified] = ok(invoke, "skills", "verify", "mail")
    assert verified["digest"] == built["digest"]
    local = ok(invoke, "skills", "verify", "--bundle", "mail-1.0.0.tar")
    assert local["signed_by"] == signer["key_id"]
    assert actions(invoke) == ["skills.delegate", "skills.publish", "skills.trust"]


def test_the_offline_host_shows_its_last_known_good_index(invoke: Invoke, work: Path) -> None:
    ok(invoke, "skills", "keygen", "root.key")
    ok(invoke, "skills", "keygen", "k1.key")
    ok(invoke, "skills", "build", str(skill_dir(work, "mail")), "--version", "1.0.0")
    ok(invoke, "skills", "sign", "mail-1.0.0.tar", "--key", "k1.key")
    ok(invoke, "skills", "delegate", "k1.key.pub", "--repo", "repo", "--root-key", "root.key")
    ok(invoke, "skills", "publish", "mail-1.0.0.tar", "--repo", "repo", "--key", "k1.key")
    ok(invoke, "skills", "trust", "root.key.pub")
    ok(invoke, "skills", "list")
    (work / "repo/index.json").rename(work / "index.away")
    listed = ok(invoke, "skills", "list")
    assert listed["fresh"] is False and "has no index.json" in listed["reason"]
    assert [s["name"] for s in listed["skills"]] == ["mail"]
    code, _, err = invoke("skills", "verify", "mail")
    assert code == 22 and "new skill installs are blocked" in err


def test_the_key_rotation_drill(invoke: Invoke, work: Path) -> None:
    """runbooks/skills.md: delegate the new key, re-sign and publish with it, revoke the old one;
    a host that verified under the old key follows with no new pin; the old key's signatures are
    refused after, the new key's accepted."""
    ok(invoke, "skills", "keygen", "root.key")
    old = ok(invoke, "skills", "keygen", "k1.key")["key_id"]
    new = ok(invoke, "skills", "keygen", "k2.key")["key_id"]
    ok(invoke, "skills", "build", str(skill_dir(work, "mail")), "--version", "1.0.0")
    ok(invoke, "skills", "sign", "mail-1.0.0.tar", "--key", "k1.key")
    ok(invoke, "skills", "delegate", "k1.key.pub", "--repo", "repo", "--root-key", "root.key")
    ok(invoke, "skills", "publish", "mail-1.0.0.tar", "--repo", "repo", "--key", "k1.key")
    ok(invoke, "skills", "trust", "root.key.pub")
    assert ok(invoke, "skills", "verify", "mail")[0]["version"] == "1.0.0"  # the host saw root 1, index 1
    old_sig = (work / "mail-1.0.0.tar.sig").read_bytes()

    ok(invoke, "skills", "delegate", "k2.key.pub", "--repo", "repo", "--root-key", "root.key")
    ok(invoke, "skills", "sign", "mail-1.0.0.tar", "--key", "k2.key")
    again = ok(invoke, "skills", "publish", "mail-1.0.0.tar", "--repo", "repo", "--key", "k2.key")
    assert again["published"][0]["added"] is False  # the same bundle: only its signature is new
    assert ok(invoke, "skills", "revoke", old, "--repo", "repo", "--root-key", "root.key")["root_version"] == 3

    listed = ok(invoke, "skills", "list")  # no new pin: root 3 is signed by the pinned root key
    assert (listed["signed_by"], listed["index_version"]) == (new, 2)
    assert ok(invoke, "skills", "verify", "mail")[0]["version"] == "1.0.0"
    code, _, err = invoke("skills", "publish", "--repo", "repo", "--key", "k1.key")
    assert code == 22 and f"revoked key {old}" in err
    (work / "repo/bundles/mail-1.0.0.tar.sig").write_bytes(old_sig)  # a mirror serving the old signature
    code, _, err = invoke("skills", "verify", "mail")
    assert code == 22 and f"signed by revoked key {old}" in err
    assert actions(invoke).count("skills.revoke") == 1


def test_a_version_published_again_with_another_bundle_is_refused(invoke: Invoke, work: Path) -> None:
    ok(invoke, "skills", "keygen", "root.key")
    ok(invoke, "skills", "keygen", "k1.key")
    ok(invoke, "skills", "delegate", "k1.key.pub", "--repo", "repo", "--root-key", "root.key")
    ok(invoke, "skills", "build", str(skill_dir(work, "mail")), "--version", "1.0.0")
    ok(invoke, "skills", "sign", "mail-1.0.0.tar", "--key", "k1.key")
    ok(invoke, "skills", "publish", "mail-1.0.0.tar", "--repo", "repo", "--key", "k1.key")
    other = skill_dir(work / "b", "mail", {"SKILL.md": "other\n"})
    ok(invoke, "skills", "build", str(other), "--version", "1.0.0", "--out", "other.tar")
    ok(invoke, "skills", "sign", "other.tar", "--key", "k1.key")
    code, _, err = invoke("skills", "publish", "other.tar", "--repo", "repo", "--key", "k1.key")
    assert code == 5 and "already published with another bundle" in err


def test_a_private_key_readable_by_others_is_refused(invoke: Invoke, work: Path) -> None:
    ok(invoke, "skills", "keygen", "k1.key")
    (work / "k1.key").chmod(0o644)
    ok(invoke, "skills", "build", str(skill_dir(work, "mail")), "--version", "1.0.0")
    code, _, err = invoke("skills", "sign", "mail-1.0.0.tar", "--key", "k1.key")
    assert code == 6 and "a private key must be 0600" in err


def test_a_new_root_pinned_with_replace_starts_from_what_it_signs(invoke: Invoke, work: Path) -> None:
    """A new root key (the old one lost): its repository starts at root version 1 again, which the
    host would call a rollback of the old root's versions; --replace forgets what the old root had."""
    ok(invoke, "skills", "keygen", "root.key")
    ok(invoke, "skills", "keygen", "k1.key")
    ok(invoke, "skills", "delegate", "k1.key.pub", "--repo", "repo", "--root-key", "root.key")
    ok(invoke, "skills", "delegate", "k1.key.pub", "--repo", "repo", "--root-key", "root.key")
    ok(invoke, "skills", "publish", "--repo", "repo", "--key", "k1.key")
    ok(invoke, "skills", "trust", "root.key.pub")
    assert ok(invoke, "skills", "list")["index_version"] == 1
    ok(invoke, "skills", "keygen", "root2.key")
    (work / "repo/root.json").unlink()
    ok(invoke, "skills", "delegate", "k1.key.pub", "--repo", "repo", "--root-key", "root2.key")
    listed = ok(invoke, "skills", "list")
    assert listed["fresh"] is False and "not signed by the pinned root key" in listed["reason"]
    assert listed["index_version"] == 1  # the last-known-good one, under the old root
    assert invoke("skills", "verify", "mail")[0] == 22
    assert ok(invoke, "skills", "trust", "root2.key.pub", "--replace")["changed"] is True
    listed = ok(invoke, "skills", "list")
    assert (listed["fresh"], listed["index_version"]) == (True, 1)
