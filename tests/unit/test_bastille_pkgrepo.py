"""The agent jail's pkg configuration as colibri writes it (adapters/bastille/pkgrepo.py): the host
checks of the operator's fingerprints, and the files staged in a jail root."""

import hashlib
from pathlib import Path

import pytest

from colibri.adapters.bastille import pkgrepo
from colibri.adapters.bastille.pkgrepo import FirstPartyRepo
from colibri.errors import SupplyError
from colibri.settings import Settings

URL = "file:///var/cache/colibri-pkg"


def fingerprint(seed: str) -> str:
    return f'function: "sha256"\nfingerprint: "{hashlib.sha256(seed.encode()).hexdigest()}"\n'


def operator_dir(tmp_path: Path, trusted: dict[str, str], revoked: dict[str, str] | None = None) -> Path:
    base = tmp_path / "fp"
    for which, files in (("trusted", trusted), ("revoked", revoked)):
        if files is None:
            continue
        (base / which).mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (base / which / name).write_text(text)
    return base


def test_a_paid_jail_gets_the_first_party_repository_and_freebsd_off(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    fp = operator_dir(tmp_path, {"colibri-2026": fingerprint("a")})
    pkgrepo.stage(root, FirstPartyRepo(URL, fp), "paid")
    conf = (root / "usr/local/etc/pkg/repos/colibri.conf").read_text()
    assert f'  url: "{URL}",\n  signature_type: "fingerprints",\n' in conf
    assert '  fingerprints: "/usr/local/etc/pkg/fingerprints/colibri",\n  enabled: yes\n}\n' in conf
    assert (root / "usr/local/etc/pkg/repos/FreeBSD.conf").read_text().endswith("FreeBSD: { enabled: no }\n")
    jail_fp = root / "usr/local/etc/pkg/fingerprints/colibri"
    assert (jail_fp / "trusted/colibri-2026").read_text() == fingerprint("a")
    assert list((jail_fp / "revoked").iterdir()) == []  # made even when empty: pkg(7) needs it

    # a community tenant keeps the release's FreeBSD repository; the jail's set follows the host's
    (fp / "trusted/colibri-2026").rename(fp / "trusted/colibri-2027")
    pkgrepo.stage(root, FirstPartyRepo(URL, fp), "community")
    assert not (root / "usr/local/etc/pkg/repos/FreeBSD.conf").exists()
    assert [p.name for p in (jail_fp / "trusted").iterdir()] == ["colibri-2027"]


@pytest.mark.parametrize(
    ("repo", "tier", "message"),
    [
        (FirstPartyRepo(None, None), "paid", "pkg_repository_url and pkg_fingerprints_dir unset"),
        (FirstPartyRepo(URL, None), "community", r"\(pkg_fingerprints_dir unset\): a community tenant"),
        (FirstPartyRepo(URL, Path("/nonexistent-colibri-fp")), "paid", "has no trusted/ directory"),
        (FirstPartyRepo(URL, Path("/")), "gold", "unknown tenant tier 'gold'"),
    ],
)
def test_a_missing_or_unknown_setting_is_a_supply_error(repo: FirstPartyRepo, tier: str, message: str) -> None:
    with pytest.raises(SupplyError, match=message) as caught:
        pkgrepo.check(repo, tier)
    assert caught.value.exit_code == 22


@pytest.mark.parametrize(
    ("trusted", "revoked", "message"),
    [
        ({}, None, "is empty: no first-party signing key is trusted"),
        ({"typo": 'function: "sha256"\nfingerprint: "abc"\n'}, None, "is not a pkg fingerprint file"),
        ({"md5": 'function: "md5"\nfingerprint: "' + "0" * 64 + '"\n'}, None, "is not a pkg fingerprint file"),
        ({"bad name!": fingerprint("a")}, None, "is not a fingerprint file name"),
        ({"a": fingerprint("a")}, {"old": fingerprint("a")}, "every trusted fingerprint .* is also revoked"),
        ({"a": "x" * 5000}, None, "at most 4096 bytes"),
    ],
)
def test_bad_fingerprint_files_are_refused_on_the_host(
    tmp_path: Path, trusted: dict[str, str], revoked: dict[str, str] | None, message: str
) -> None:
    fp = operator_dir(tmp_path, trusted, revoked)
    (fp / "trusted").mkdir(exist_ok=True)
    with pytest.raises(SupplyError, match=message):
        pkgrepo.check(FirstPartyRepo(URL, fp), "paid")


def test_a_symlink_in_the_fingerprints_dir_is_refused(tmp_path: Path) -> None:
    fp = operator_dir(tmp_path, {"a": fingerprint("a")})
    (fp / "trusted/b").symlink_to("/etc/passwd")
    with pytest.raises(SupplyError, match="is not a regular file"):
        pkgrepo.check(FirstPartyRepo(URL, fp), "paid")


def test_fingerprint_files_as_pkg_writes_them_are_accepted(tmp_path: Path) -> None:
    hexa = hashlib.sha256(b"k").hexdigest()
    fp = operator_dir(tmp_path, {"a": f'# the 2026 key\nfingerprint: "{hexa}"\nfunction: "sha256"\n'})
    url, trusted, revoked = pkgrepo.check(FirstPartyRepo(URL, fp), "paid")
    assert (url, list(trusted), revoked) == (URL, ["a"], {})


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://pkg.example.org/colibri/${ABI}", True),
        ("pkg+https://pkg.example.org/colibri", True),
        ("file:///var/cache/colibri-pkg", True),
        ("file://relative", False),
        ('https://pkg.example.org/x",enabled:no', False),
        ("https://pkg.example.org/a b", False),
        ("ftp://pkg.example.org/", False),
    ],
)
def test_the_repository_url_setting(url: str, ok: bool) -> None:
    if ok:
        assert Settings(pkg_repository_url=url).pkg_repository_url == url
    else:
        with pytest.raises(ValueError, match="pkg_repository_url"):
            Settings(pkg_repository_url=url)
