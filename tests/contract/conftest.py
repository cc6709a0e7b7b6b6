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

import pytest

from colibri.adapters.jail import JailBackend, JailState
from colibri.adapters.runner import ShRunner
from colibri.resources import shipped
from tests.conftest import require

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
    warm_package_cache(emulator.prefix / "releases" / emulator.release)
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
    )


def warm_package_cache(release: Path) -> None:
    """Thin jails copy /var from the release, so a package file in the release's cache is in every
    new jail's cache: what an operator does with ``pkg fetch -o`` (runbooks/install-freebsd-host.md):
    pkg itself and the pinned python311, as the emulator's package archives."""
    from tests.emulators.bastille.packages import warm_cache

    warm_cache(release / "var/cache/pkg")


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
