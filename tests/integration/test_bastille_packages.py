"""Issue 13, packages: the agent jail pins the first-party pkg repository, and the emulator's pkg(7)
and pkg(8) accept and refuse as freebsd/pkg and usr.sbin/pkg do.

One emulated bastille for the module (its release holds the signed first-party mirror, as
runbooks/first-party-packages.md lays it out).  The first half drives pkg itself in a plain jail,
each case against what the sources say (libpkg/pkg_config.c, pkg_repo.c, src/install.c,
src/update.c, usr.sbin/pkg/pkg.c); the second half runs colibri's Bastille adapter and the
shipped template: a paid tenant's jail ends with the first-party repository alone, a community
tenant's keeps FreeBSD's too, and each refusal of agent-jail-bootstrap.sh reaches the operator.
Signatures are real (openssl-made RSA keys; the emulator verifies them).
"""

import io
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from colibri.adapters.bastille import pkgrepo
from colibri.adapters.bastille.backend import Bastille
from colibri.adapters.bastille.pkgrepo import FirstPartyRepo
from colibri.adapters.runner import ShRunner
from colibri.cli.context import Context
from colibri.errors import EXIT_CODES, BastilleError, SupplyError
from colibri.resources import shipped
from colibri.services.lifecycle.layout import SpawnPaths
from colibri.services.lifecycle.pipeline import SpawnService
from tests.conftest import Invoke
from tests.contract.conftest import MIRROR, warm_package_cache
from tests.emulators.bastille.fixtures import BastilleEmulator, make_emulator
from tests.emulators.bastille.packages import (
    PKG_VERSION,
    SigningKey,
    make_package,
    pkg_package,
    publish,
    python_package,
    shared_key,
    trust,
)

pytestmark = pytest.mark.integration

REL = "14.3-RELEASE"
PLAIN = "plain"
PY = "python311-3.11.13"
FP = "/usr/local/etc/pkg/fingerprints/colibri"


@dataclass
class World:
    emu: BastilleEmulator
    repo: FirstPartyRepo  # the release's signed mirror and its host fingerprints
    packages: list[Path]  # pkg and python311 archives
    base: Path

    @property
    def root(self) -> Path:
        return self.emu.jail_root(PLAIN)

    def pkg(self, *argv: str, jail: str = PLAIN) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["jexec", "-l", "-U", "root", jail, "pkg", *argv], env=self.emu.env, capture_output=True, text=True
        )

    def sh(self, jail: str, script: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["jexec", "-l", "-U", "root", jail, "/bin/sh", "-c", script],
            env=self.emu.env,
            capture_output=True,
            text=True,
        )

    def repo_in_plain(self, name: str, signers: list[SigningKey], **conf: str) -> str:
        """A signed repository at /var/tmp/NAME of the plain jail and its repos/NAME.conf."""
        directory = self.root / "var/tmp" / name
        shutil.rmtree(directory, ignore_errors=True)
        publish(directory, self.packages, signers)
        fields = {"url": f'"file:///var/tmp/{name}"', "signature_type": '"fingerprints"', "fingerprints": f'"{FP}"'}
        fields.update(conf)
        body = ",\n".join(f"  {k}: {v}" for k, v in fields.items())
        self.conf(f"{name}.conf", f"{name}: {{\n{body}\n}}\n")
        return f"/var/tmp/{name}"

    def conf(self, fname: str, text: str) -> None:
        path = self.root / "usr/local/etc/pkg/repos" / fname
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def fingerprints(self, trusted: list[SigningKey], revoked: list[SigningKey] | None = None) -> None:
        trust(self.root / FP.lstrip("/"), trusted, revoked)

    def installed(self) -> list[str]:
        r = self.pkg("query", "-a", "%n %R")
        return sorted(r.stdout.split("\n")[:-1])

    def backend(self, repo: FirstPartyRepo | None = None) -> Bastille:
        runner = ShRunner({"PATH": self.emu.env["PATH"], "LANG": "C.UTF-8"})
        return Bastille(
            runner,
            bastille="bastille",
            prefix=self.emu.prefix,
            release=self.emu.release,
            config=self.emu.conf_path,
            locks_dir=self.base / "locks",
            intents_dir=self.base / "intents",
            templates_source=shipped("jails"),
            pkg_repo=self.repo if repo is None else repo,
        )


@pytest.fixture(name="world", scope="module")
def world_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    base = tmp_path_factory.mktemp("packages")
    emu = make_emulator(base / "emu")
    try:
        repo = warm_package_cache(emu.prefix / "releases" / emu.release)
        built = base / "built"
        packages = [pkg_package(built), python_package(built)]
        world = World(emu, repo, packages, base)
        assert emu.run("create", PLAIN, REL, "10.17.92.10").returncode == 0
        # pkg(8) in the plain jail from the mirror, unchecked: the first half tests pkg(8) itself
        r = world.sh(PLAIN, f"SIGNATURE_TYPE=none pkg add /{MIRROR}/All/pkg-{PKG_VERSION}.pkg")
        assert r.returncode == 0, r.stderr
        yield world
    finally:
        emu.stop_all()


@pytest.fixture(name="plain")
def plain_fixture(world: World) -> World:
    """The plain jail with only the release's FreeBSD.conf, no fingerprints, only pkg installed."""
    root = world.root
    for rel in ("usr/local/etc/pkg/repos", "usr/local/etc/pkg/fingerprints", "var/db/pkg/repos", "var/tmp"):
        shutil.rmtree(root / rel, ignore_errors=True)
    (root / "var/tmp").mkdir(mode=0o1777)
    if world.pkg("info", "-e", "python311").returncode == 0:
        assert world.pkg("delete", "-y", "python311").returncode == 0
    return world


def k(name: str) -> SigningKey:
    return shared_key(name)


def repositories(world: World, jail: str) -> dict[str, dict[str, str]]:
    """``pkg -vv``'s repositories (src/utils.c print_repository): name -> field -> value as printed."""
    out = world.pkg("-vv", jail=jail).stdout
    found = {}
    for name, body in re.findall(r"^  (\S+): \{ \n(.*?)\n  \}$", out, re.M | re.S):
        found[name] = {f.strip(): v.strip() for f, v in (line.split(":", 1) for line in body.splitlines())}
    return found


def retar(path: Path, members: list[tuple[str, bytes]]) -> None:
    with tarfile.open(path, "w:xz") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


# ---- pkg.conf(5) / pkg-repository(5): the files pkg reads, in order ----------------------------------
def test_later_files_override_field_by_field_and_enabled_is_a_boolean(plain: World) -> None:
    """pkg_config.c add_repo(): FreeBSD: { enabled: no } in repos/ keeps /etc/pkg's url; a repository
    named again keeps its earlier enabled unless given; a new one without url is ignored; priority is
    reset to 0 by an override that does not give it; a quoted "yes" is a string, so false."""
    plain.conf("FreeBSD.conf", "FreeBSD: { enabled: no }\n")
    plain.conf("a.conf", 'first: { url: "file:///var/tmp/x", priority: 5 }\nghost: { enabled: yes }\n')
    plain.conf("b.conf", 'first: { signature_type: "none" }\nquoted: { url: "file:///var/tmp/y", enabled: "yes" }\n')
    blocks = repositories(plain, PLAIN)
    assert blocks["FreeBSD"]["url"] == '"pkg+https://pkg.example.invalid/FreeBSD:14:amd64/quarterly",'
    assert blocks["FreeBSD"]["enabled"] == "no,"
    assert blocks["first"]["enabled"] == "yes," and blocks["first"]["priority"] == "0,"
    assert blocks["first"]["signature_type"] == '"NONE"'
    assert "ghost" not in blocks
    assert blocks["quoted"]["enabled"] == "no,"
    plain.conf("c.conf", 'bad: { url: "file:///x", signature_type: "gpg" }\n')
    r = plain.pkg("-vv")
    assert "pkg: Invalid signature_type 'gpg' for the 'bad' repo\n" in r.stderr and "  bad: {" not in r.stdout


# ---- signature_type fingerprints: what pkg refuses ----------------------------------------------------
def test_an_unsigned_catalogue_is_refused_and_nothing_is_installed(plain: World) -> None:
    plain.fingerprints([k("colibri")])
    plain.repo_in_plain("colibri", signers=[])
    r = plain.pkg("update", "-r", "colibri")
    assert r.returncode == 1
    assert "pkg: No signature found\n" in r.stderr and "Unable to update repository colibri\n" in r.stdout
    r = plain.pkg("install", "-y", "-r", "colibri", PY)
    assert r.returncode == 3 and "Error updating repositories!" in r.stdout  # install returns EPKG_FATAL
    r = plain.pkg("install", "-U", "-y", "-r", "colibri", PY)  # the failed update removed the catalogue
    assert r.returncode == 1 and "pkg: Repository colibri cannot be opened. 'pkg update' required\n" in r.stderr
    assert plain.installed() == ["pkg unknown-repository"]


def test_a_signer_that_is_not_trusted_is_refused(plain: World) -> None:
    plain.fingerprints([k("colibri")])
    plain.repo_in_plain("colibri", signers=[k("stranger")])
    r = plain.pkg("install", "-y", "-r", "colibri", PY)
    assert r.returncode == 3 and "pkg: No trusted public keys found\n" in r.stderr
    assert plain.installed() == ["pkg unknown-repository"]
    plain.fingerprints([])  # trusted/ empty
    r = plain.pkg("update", "-r", "colibri")
    assert r.returncode == 1 and "pkg: No trusted certificates\n" in r.stderr


def test_a_revoked_signer_is_refused_even_when_also_trusted(plain: World) -> None:
    """pkg_repo_check_fingerprint(): revoked/ is looked at first, and any revoked signer refuses."""
    plain.fingerprints([k("colibri"), k("rotated")], revoked=[k("colibri")])
    plain.repo_in_plain("colibri", signers=[k("rotated"), k("colibri")])
    r = plain.pkg("update", "-r", "colibri")
    assert r.returncode == 1 and "pkg: At least one of the certificates has been revoked\n" in r.stderr


def test_a_signature_that_does_not_match_is_refused(plain: World) -> None:
    plain.fingerprints([k("colibri")])
    path = plain.root / plain.repo_in_plain("colibri", signers=[k("colibri")]).lstrip("/")
    other = plain.base / "other"  # the same trusted key's signature, of another catalogue
    publish(other, plain.packages[:1], [k("colibri")])
    with tarfile.open(other / "packagesite.pkg") as o, tarfile.open(path / "packagesite.pkg") as mine:
        sig = o.extractfile("packagesite.yaml.sig").read()  # type: ignore[union-attr]
        site = mine.extractfile("packagesite.yaml").read()  # type: ignore[union-attr]
    retar(
        path / "packagesite.pkg",
        [("packagesite.yaml.sig", sig), ("packagesite.yaml.pub", k("colibri").pub), ("packagesite.yaml", site)],
    )
    r = plain.pkg("update", "-r", "colibri")
    assert r.returncode == 1
    assert "pkg: No trusted certificate has been used to sign the repository\n" in r.stderr


def test_a_package_that_does_not_match_the_catalogue_is_refused(plain: World) -> None:
    plain.fingerprints([k("colibri")])
    path = plain.root / plain.repo_in_plain("colibri", signers=[k("colibri")]).lstrip("/")
    make_package(path / "All" / f"{PY}.pkg", "python311", "3.11.13", files={"/usr/local/bin/evil": b"#!/bin/sh\n"})
    r = plain.pkg("install", "-y", "-r", "colibri", PY)
    assert r.returncode == 3 and f"pkg: {PY} failed checksum from repository\n" in r.stderr
    assert plain.installed() == ["pkg unknown-repository"] and not (plain.root / "usr/local/bin/evil").exists()


# ---- -r, enabled, and where pkg says one thing and does another -------------------------------------
def test_r_names_one_repository_and_query_reports_where_a_package_came_from(plain: World) -> None:
    plain.fingerprints([k("colibri")])
    plain.repo_in_plain("colibri", signers=[k("colibri")])
    r = plain.pkg("install", "-y", "-r", "colibri", PY)
    assert r.returncode == 0, r.stderr
    assert "colibri is up to date." in r.stdout and "FreeBSD" not in r.stdout  # only the named one updated
    assert plain.pkg("query", "%R", "python311").stdout == "colibri\n"
    assert plain.installed() == ["pkg unknown-repository", "python311 colibri"]  # pkg add: no repository


def test_an_unknown_repository_is_refused(plain: World) -> None:
    r = plain.pkg("install", "-y", "-r", "nope", PY)  # update first: src/update.c
    assert r.returncode == 3
    assert "WARNING: repository 'nope' does not exist\n" in r.stderr and "No repositories are enabled." in r.stdout
    r = plain.pkg("install", "-U", "-y", "-r", "nope", PY)  # no update: pkg_jobs_set_repositories()
    assert (r.returncode, r.stderr) == (1, "pkg: Unknown repository: nope\n")


def test_a_disabled_repository_is_not_used_unless_named(plain: World) -> None:
    """pkgdb.c: "Ignore inactive repos unless explicitly requested"; pkg-install(8) -r: "irrespective
    of the configured enabled status" -- so the bootstrap checks the origin itself."""
    plain.conf("FreeBSD.conf", "FreeBSD: { enabled: no }\n")
    plain.fingerprints([k("colibri")])
    plain.repo_in_plain("colibri", signers=[k("colibri")], enabled="no")
    r = plain.pkg("install", "-y", PY)
    assert r.returncode == 3 and "No repositories are enabled." in r.stdout
    assert plain.installed() == ["pkg unknown-repository"]
    r = plain.pkg("install", "-y", "-r", "colibri", PY)
    assert r.returncode == 0 and plain.pkg("query", "%R", "python311").stdout == "colibri\n"


def test_an_update_that_fails_for_one_of_two_repositories_still_exits_0(plain: World) -> None:
    """pkg install updates without strict: a failing repository that is not the last one only
    prints "Error updating repositories!" and the install goes on (exit 0)."""
    plain.conf("FreeBSD.conf", "FreeBSD: { enabled: no }\n")
    plain.fingerprints([k("colibri")])
    plain.repo_in_plain("aaa", signers=[])  # read first (a.conf < colibri.conf), unsigned
    plain.repo_in_plain("colibri", signers=[k("colibri")])
    r = plain.pkg("install", "-y", PY)
    assert r.returncode == 0, r.stderr
    assert "Error updating repositories!" in r.stdout and "pkg: No signature found\n" in r.stderr
    assert plain.pkg("query", "%R", "python311").stdout == "colibri\n"


# ---- pkg(7): bootstrapping pkg(8) from a repository ---------------------------------------------------
def test_pkg7_checks_pkg_pkg_sig_against_the_repository_fingerprints(world: World) -> None:
    emu = world.emu
    assert emu.run("create", "fresh7", REL, "10.17.92.11").returncode == 0
    root = emu.jail_root("fresh7")
    try:
        repo = FirstPartyRepo(world.repo.url, world.base / "fp-stranger")
        trust(world.base / "fp-stranger", [k("stranger")])
        pkgrepo.stage(root, repo, "paid")
        r = world.sh("fresh7", "pkg bootstrap -y -r colibri")
        assert r.returncode == 1 and "No trusted fingerprint found matching package's certificate\n" in r.stderr
        shutil.rmtree(root / FP.lstrip("/"))
        trust(root / FP.lstrip("/"), [k("colibri")], revoked=[k("colibri")])
        r = world.sh("fresh7", "pkg bootstrap -y -r colibri")
        assert r.returncode == 1 and "The package was signed with revoked certificate colibri-0\n" in r.stderr
        shutil.rmtree(root / FP.lstrip("/") / "revoked")  # pkg(7) needs revoked/, even empty
        r = world.sh("fresh7", "pkg bootstrap -y -r colibri")
        assert r.returncode == 1 and "pkg: Error loading revoked certificates\n" in r.stderr
        assert world.sh("fresh7", "pkg -N").returncode == 1  # still no pkg(8)
        (root / FP.lstrip("/") / "revoked").mkdir()
        r = world.sh("fresh7", "pkg bootstrap -y -r colibri")
        assert r.returncode == 0, r.stderr
        assert "Verifying signature with trusted certificate colibri-0... done" in r.stdout
    finally:
        emu.run("destroy", "-afy", "fresh7")


# ---- colibri: the jail's pkg configuration and agent-jail-bootstrap.sh ------------------------------
def enabled_repos(world: World, jail: str) -> list[str]:
    return sorted(name for name, fields in repositories(world, jail).items() if fields["enabled"] == "yes,")


def test_a_paid_tenants_jail_knows_only_the_first_party_repository(world: World) -> None:
    info = world.backend().create("paid1", ip="10.17.92.20", template=None)
    assert enabled_repos(world, "paid1") == ["colibri"]
    assert world.pkg("query", "%R", "python311", jail="paid1").stdout == "colibri\n"
    conf = (info.root / "usr/local/etc/pkg/repos/colibri.conf").read_text()
    assert 'signature_type: "fingerprints"' in conf and f'fingerprints: "{FP}"' in conf
    assert (info.root / "usr/local/etc/pkg/repos/FreeBSD.conf").read_text().endswith("FreeBSD: { enabled: no }\n")
    assert sorted(p.name for p in (info.root / FP.lstrip("/") / "trusted").iterdir()) == ["colibri-0"]

    # a pinned package from any other repository is refused (the bootstrap, applied again)
    script = "/usr/local/libexec/colibri/agent-jail-bootstrap.sh"
    assert world.pkg("delete", "-y", "python311", jail="paid1").returncode == 0
    r = world.sh("paid1", f"pkg install -y -r FreeBSD {PY} >/dev/null && /bin/sh {script}")
    assert r.returncode == 1
    assert (
        f"agent-jail-bootstrap: {PY} is installed from FreeBSD, not from the colibri repository; "
        "no pinned package was installed.\n"
    ) in r.stdout
    # a config file that turns the signature check off is refused, whatever file it is in
    world.pkg("delete", "-y", "python311", jail="paid1")
    (info.root / "usr/local/etc/pkg/repos/zz.conf").write_text('colibri: { signature_type: "none" }\n')
    r = world.sh("paid1", f"/bin/sh {script}")
    assert r.returncode == 1 and "the colibri repository is not signature-checked once pkg reads every" in r.stdout
    assert world.pkg("info", "-e", "python311", jail="paid1").returncode == 1
    # put right, the same script installs it again from the first-party repository
    (info.root / "usr/local/etc/pkg/repos/zz.conf").unlink()
    r = world.sh("paid1", f"/bin/sh {script}")
    assert r.returncode == 0 and f"{PY} installed from colibri" in r.stdout, r.stdout


def test_a_community_tenant_keeps_the_freebsd_repository(world: World) -> None:
    info = world.backend().create("comm1", ip="10.17.92.21", template=None, tier="community")
    assert enabled_repos(world, "comm1") == ["FreeBSD", "colibri"]
    assert not (info.root / "usr/local/etc/pkg/repos/FreeBSD.conf").exists()
    assert world.pkg("query", "%R", "python311", jail="comm1").stdout == "colibri\n"  # pinned: first-party


def test_without_the_first_party_repository_no_jail_is_made(world: World) -> None:
    calls = len((world.emu.prefix / ".emulator/log").read_text().splitlines())
    with pytest.raises(SupplyError, match="pkg_repository_url and pkg_fingerprints_dir unset") as caught:
        world.backend(FirstPartyRepo(None, None)).create("nope1", ip="10.17.92.22", template=None)
    assert caught.value.exit_code == 22 and 22 in EXIT_CODES
    assert '"create"' not in "".join((world.emu.prefix / ".emulator/log").read_text().splitlines()[calls:])
    bad = world.base / "fp-bad"
    (bad / "trusted").mkdir(parents=True)
    (bad / "trusted/typo").write_text('function: "sha256"\nfingerprint: "not hex"\n')
    with pytest.raises(SupplyError, match="is not a pkg fingerprint file"):
        world.backend(FirstPartyRepo(world.repo.url, bad)).create("nope1", ip="10.17.92.22", template=None)
    assert not (world.emu.jails_dir / "nope1").exists()


def test_a_revoked_signing_key_refuses_the_spawn_and_the_rotation_drill(world: World, tmp_path: Path) -> None:
    """The operator revokes the key the mirror is signed with: a new jail is refused (pkg(7) says
    why) and nothing is left; the mirror re-signed by the new key, trusted/ holding it and revoked/
    the old one, spawns again, and a running agent jail is untouched by either."""
    fingerprints = tmp_path / "fp"
    trust(fingerprints, [k("rotated")], revoked=[k("colibri")])
    rotated = FirstPartyRepo(world.repo.url, fingerprints)
    running = "keep1"
    if not world.emu.is_running(running):
        world.backend().create(running, ip="10.17.92.24", template=None)
    with pytest.raises(BastilleError) as caught:
        world.backend(rotated).create("rot1", ip="10.17.92.23", template=None)
    assert "The package was signed with revoked certificate colibri-0" in str(caught.value)
    assert "nothing was installed." in str(caught.value)
    assert not (world.emu.jails_dir / "rot1").exists()
    # re-sign the release's mirror with the new key (what the build host publishes)
    release_mirror = world.emu.prefix / "releases" / REL / MIRROR
    with tempfile.TemporaryDirectory() as tmp:
        publish(Path(tmp), list(release_mirror.glob("All/*.pkg")), [k("rotated")])
        for name in ("packagesite.pkg", "Latest/pkg.pkg.sig"):
            shutil.copy(Path(tmp) / name, release_mirror / name)
    try:
        world.backend(rotated).create("rot1", ip="10.17.92.23", template=None)
        assert world.pkg("query", "%R", "python311", jail="rot1").stdout == "colibri\n"
        assert world.emu.is_running(running)
        assert world.sh(running, "/usr/local/bin/python3.11 -c 'print(6 * 7)'").stdout == "42\n"
    finally:
        warm_package_cache(world.emu.prefix / "releases" / REL)  # the module's mirror, signed by the old key


def test_the_spawn_gives_the_tenants_tier_to_its_jail(
    world: World, invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    """register-tenant --tier community, then colibri's own spawn pipeline: the jail it makes keeps
    FreeBSD's repository (a paid tenant's does not, above)."""
    emu = world.emu
    for key, value in {
        "COLIBRI_JAIL_BACKEND": "bastille",
        "COLIBRI_BASTILLE_PREFIX": str(emu.prefix),
        "COLIBRI_BASTILLE_CONFIG": str(emu.conf_path),
        "COLIBRI_BASTILLE_RELEASE": emu.release,
        "COLIBRI_JAIL_IP_POOL": "10.17.93.0/24",
        "COLIBRI_PKG_REPOSITORY_URL": str(world.repo.url),
        "COLIBRI_PKG_FINGERPRINTS_DIR": str(world.repo.fingerprints_dir),
    }.items():
        monkeypatch.setenv(key, value)
    code, _, err = invoke("register-tenant", "opencomm", "--collection", "", "--tier", "community")
    assert code == 0, err
    ctx = Context()
    try:
        s = ctx.settings
        runner = ShRunner({"PATH": emu.env["PATH"], "LANG": "C.UTF-8"})
        paths = SpawnPaths(s.run_dir, shipped("skills"), s.jail_user, s.jail_ip_pool, s.jail_template)
        spawn = SpawnService(ctx.store, Bastille.from_settings(s, runner, shipped("jails")), paths, provision=None)

        def stop_at_the_mother(tenant: str, step: str, state: str, detail: str) -> None:
            if step == "mother_started":
                raise KeyboardInterrupt  # enough: the jail is made (the mother is test_bastille_rc's)

        with pytest.raises(KeyboardInterrupt):
            spawn.spawn("opencomm", on_step=stop_at_the_mother)
    finally:
        ctx.close()
    assert enabled_repos(world, "opencomm") == ["FreeBSD", "colibri"]
    assert world.pkg("query", "%R", "python311", jail="opencomm").stdout == "colibri\n"
