"""The JailBackend contract: one body of tests, run against every backend.

``sandbox`` runs real bubblewrap namespaces; ``bastille`` runs colibri's Bastille adapter against the
bastille 1.4.4 emulator in tests/emulators/bastille (FreeBSD is not available here); ``fake`` is
the unit tests' FakeJails (tests/fakes/jail.py), held to the same contract so it cannot drift.
The fake runs here on the tenant's host ids (as root), as the real backends do.
"""

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from colibri.adapters.jail import JailBackend, JailState
from colibri.adapters.runner import ShRunner
from colibri.resources import shipped
from tests.conftest import require

if TYPE_CHECKING:
    from colibri.adapters.bastille.pkgrepo import FirstPartyRepo

BACKENDS = [
    pytest.param("sandbox", marks=pytest.mark.integration),
    pytest.param("bastille", marks=pytest.mark.integration),
    "fake",
]


def make_sandbox(tmp_path: Path) -> JailBackend:
    from colibri.adapters.sandbox.backend import Sandbox

    require(shutil.which("bwrap") is not None, "bubblewrap (Debian package bubblewrap)")
    require(os.geteuid() == 0, "root (the sandbox backend runs jails as root, like bastille)")
    runner = ShRunner({"PATH": os.environ["PATH"], "LANG": "C.UTF-8"})
    return Sandbox(tmp_path / "jails", shipped("jails"), "agent", runner)


def make_bastille(tmp_path: Path, request: pytest.FixtureRequest) -> JailBackend:
    from colibri.adapters.bastille.backend import Bastille

    emulator = request.getfixturevalue("bastille_emulator")
    repo = warm_package_cache(emulator.prefix / "releases" / emulator.release)
    runner = ShRunner({"PATH": emulator.env["PATH"], "LANG": "C.UTF-8"})
    return Bastille(
        runner,
        bastille="bastille",
        prefix=emulator.prefix,
        release=emulator.release,
        config=emulator.conf_path,
        locks_dir=tmp_path / "locks",
        intents_dir=tmp_path / "intents",
        templates_source=shipped("jails"),
        pkg_repo=repo,
    )


MIRROR = "var/cache/colibri-pkg"
"""Where the tests keep the first-party repository's offline mirror in a release (and so in every
thin jail: they copy /var from their release), as runbooks/first-party-packages.md does."""


def warm_package_cache(release: Path, monkeypatch: pytest.MonkeyPatch | None = None) -> "FirstPartyRepo":
    """The first-party pkg repository, signed, mirrored into the release (pkg itself and the pinned
    python311, as the emulator's package archives), and its trusted fingerprint on the host; with
    ``monkeypatch`` colibri's settings (COLIBRI_PKG_*) point at it too."""
    from colibri.adapters.bastille.pkgrepo import FirstPartyRepo
    from tests.emulators.bastille.packages import fingerprints_of, warm_cache

    warm_cache(release / MIRROR)
    repo = FirstPartyRepo(f"file:///{MIRROR}", fingerprints_of(release / MIRROR))
    if monkeypatch is not None:
        monkeypatch.setenv("COLIBRI_PKG_REPOSITORY_URL", str(repo.url))
        monkeypatch.setenv("COLIBRI_PKG_FINGERPRINTS_DIR", str(repo.fingerprints_dir))
    return repo


def make_fake(tmp_path: Path) -> JailBackend:
    from tests.fakes.jail import FakeJails

    require(os.geteuid() == 0, "root (the contract checks the owners of the jail's files)")
    return FakeJails(tmp_path / "jails", host_ids=True)


@pytest.fixture(name="backend", params=BACKENDS)
def backend_fixture(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[JailBackend]:
    makers = {"sandbox": make_sandbox, "fake": make_fake}
    maker = makers.get(request.param)
    backend = maker(tmp_path) if maker is not None else make_bastille(tmp_path, request)
    yield backend
    for jail in backend.list_jails():  # leave no running jail behind
        if jail.state is JailState.RUNNING:
            backend.stop(jail.name)


from tests.emulators.bastille.fixtures import bastille_emulator_fixture  # noqa: E402,F401  (a fixture)
