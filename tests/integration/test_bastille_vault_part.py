"""Issue 9's spawn-side vault items on the bastille backend: the real adapter against the bastille
1.4.4 emulator.  A refused --template is not kept on the tenant, and a tenant without secrets gets
an identity that says so.  Spawns stop at ``mother_installed``, as in test_bastille_faults.py
(its module docstring says why: the emulator's service(8) runs no mother)."""

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from colibri.adapters.bastille.backend import Bastille
from colibri.adapters.runner import ShRunner
from colibri.cli.context import Context
from colibri.errors import ColibriError, TemplateNotFound
from colibri.resources import shipped
from colibri.services.lifecycle.layout import IDENTITY, SpawnPaths
from colibri.services.lifecycle.pipeline import SpawnService
from tests.contract.conftest import warm_package_cache
from tests.emulators.bastille.fixtures import BastilleEmulator, bastille_emulator_fixture  # noqa: F401

pytestmark = pytest.mark.integration


@pytest.fixture(name="ctx")
def ctx_fixture(bastille_emulator: BastilleEmulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[Context]:
    emu = bastille_emulator
    warm_package_cache(emu.prefix / "releases" / emu.release, monkeypatch)
    monkeypatch.setenv("COLIBRI_JAIL_BACKEND", "bastille")
    monkeypatch.setenv("COLIBRI_BASTILLE_PREFIX", str(emu.prefix))
    monkeypatch.setenv("COLIBRI_BASTILLE_CONFIG", str(emu.conf_path))
    monkeypatch.setenv("COLIBRI_BASTILLE_RELEASE", emu.release)
    monkeypatch.setenv("COLIBRI_JAIL_IP_POOL", "10.17.91.0/24")
    ctx = Context()
    yield ctx
    ctx.close()


class Boundary(Exception):
    pass


def stop_before_mother(tenant: str, step: str, state: str, detail: str) -> None:
    if (step, state) == ("mother_started", "start"):
        raise Boundary(tenant)


def spawn_service(ctx: Context, emu: BastilleEmulator) -> tuple[SpawnService, Bastille]:
    runner = ShRunner({"PATH": emu.env["PATH"], "LANG": "C.UTF-8"})
    jails = Bastille.from_settings(ctx.settings, runner, shipped("jails"))
    s = ctx.settings
    paths = SpawnPaths(s.run_dir, shipped("skills"), s.jail_user, s.jail_ip_pool, s.jail_template)
    return SpawnService(ctx.store, jails, paths, provision=ctx.secrets().provision), jails


def spawn_to_mother_installed(spawn: SpawnService, tenant: str, **options: str) -> ColibriError | None:
    try:
        spawn.spawn(tenant, on_step=stop_before_mother, **options)  # type: ignore[arg-type]
    except Boundary:
        return None
    except ColibriError as exc:
        return exc
    raise AssertionError("the spawn went past mother_installed")


def test_a_refused_template_is_not_kept_and_no_secrets_are_expected_without_a_collection(
    bastille_emulator: BastilleEmulator, ctx: Context
) -> None:
    tenants = ctx.tenants()
    tenants.register("demo", "", None)
    spawn, jails = spawn_service(ctx, bastille_emulator)
    error = spawn_to_mother_installed(spawn, "demo", template="colibri/nope")
    assert isinstance(error, TemplateNotFound), error
    assert tenants.show("demo")["template"] is None  # it was stored, and the next spawn failed on it
    assert spawn_to_mother_installed(spawn, "demo") is None
    record = tenants.show("demo")
    assert (record["template"], record["spawn_step"]) == ("colibri/agent", "mother_installed")
    identity = json.loads((jails.root("demo") / IDENTITY.lstrip("/")).read_text())
    assert identity["secrets_expected"] is False and identity["env_file"] == "/home/agent/.env"
    assert not (Path(jails.root("demo")) / "home/agent/.env").exists()
