"""pytest fixture: a private bastille 1.4.4 emulator installation (prefix, config, PATH, release).

Use it from a test module or a conftest::

    from tests.emulators.bastille.fixtures import bastille_emulator_fixture  # noqa: F401

    def test_x(bastille_emulator):
        r = bastille_emulator.run("create", "web1", "14.3-RELEASE", "10.17.89.10")
        subprocess.run(["bastille", "list", "jails"], env=bastille_emulator.env)

Or pass ``.env`` to your own subprocess calls (colibri's adapters): it puts the emulator's ``bastille``
and ``jls`` first on PATH, points BASTILLE_CONFIG at the private bastille.conf and sets NO_COLOR=1.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.emulators.bastille import state

EMU_BIN = Path(__file__).resolve().parent / "bin"
DEFAULT_RELEASE = "14.3-RELEASE"

CONFIG_TEMPLATE = """\
## bastille.conf written by tests/emulators/bastille/fixtures.py (bastille 1.4.4 sample layout)
bastille_prefix="{prefix}"                                 ## default: "/usr/local/bastille"
bastille_backupsdir="${{bastille_prefix}}/backups"
bastille_cachedir="${{bastille_prefix}}/cache"
bastille_jailsdir="${{bastille_prefix}}/jails"
bastille_releasesdir="${{bastille_prefix}}/releases"
bastille_templatesdir="${{bastille_prefix}}/templates"
bastille_logsdir="${{bastille_prefix}}/logs"
bastille_pf_conf="/etc/pf.conf"
bastille_sharedir="{sharedir}"
bastille_bootstrap_archives="base"
bastille_tzdata=""
bastille_resolv_conf="/etc/resolv.conf"
bastille_url_freebsd="http://ftp.freebsd.org/pub/FreeBSD/releases/"
bastille_zfs_enable="NO"
bastille_zfs_zpool=""
bastille_zfs_prefix="bastille"
bastille_zfs_options="-o compress=on -o atime=off"
bastille_network_vnet_type="if_bridge"
bastille_network_loopback="bastille0"
bastille_network_pf_ext_if="ext_if"
bastille_network_pf_table="jails"
bastille_network_shared=""
bastille_network_gateway=""
bastille_network_gateway6=""
bastille_template_base="default/base"
bastille_template_empty=""
bastille_template_thick="default/thick"
bastille_template_clone="default/clone"
bastille_template_thin="default/thin"
bastille_template_vnet="default/vnet"
bastille_template_vlan="default/vlan"
"""


@dataclass
class BastilleEmulator:
    """A private emulated bastille installation. ``env`` is what to hand to subprocesses."""

    prefix: Path
    conf_path: Path
    env: dict[str, str]
    release: str = DEFAULT_RELEASE
    bin_dir: Path = EMU_BIN
    jails_dir: Path = field(init=False)

    def __post_init__(self) -> None:
        self.jails_dir = self.prefix / "jails"

    def run(
        self, *args: str, input: str | None = None, env: dict[str, str] | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """``bastille ARGS`` with stdin closed (or ``input``), capturing stdout and stderr."""
        return subprocess.run(
            ["bastille", *args],
            env={**self.env, **(env or {})},
            input=input if input is not None else "",
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def jls(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["jls", *args], env=self.env, capture_output=True, text=True, check=False)

    def jail_root(self, name: str) -> Path:
        return self.jails_dir / name / "root"

    def is_running(self, name: str) -> bool:
        return self.jls("-j", name, "name").returncode == 0

    def stop_all(self) -> None:
        """Kill every running emulated jail of this prefix (what the fixture does at teardown)."""
        layout = state.layout_from_env(self.env)
        if layout is not None:
            state.kill_all(layout)


def _require(ok: bool, what: str) -> None:
    """Skip on a developer machine without the part; fail under CI (tests.conftest.require)."""
    from tests.conftest import require

    require(ok, f"the bastille emulator needs {what}")


def make_emulator(base: Path, release: str | None = DEFAULT_RELEASE) -> BastilleEmulator:
    """Create prefix + bastille.conf under ``base`` and bootstrap ``release`` (None: skip)."""
    _require(shutil.which("bwrap") is not None, "bwrap (Debian package bubblewrap)")
    _require(shutil.which("nsenter") is not None, "nsenter (util-linux)")
    _require(os.geteuid() == 0, "root (bastille refuses to run otherwise, and bwrap mounts need it)")
    prefix = base / "bastille"
    prefix.mkdir(parents=True)
    prefix.chmod(0o750)  # ref §1.2: bastille_prefix must be 0750
    conf = base / "bastille.conf"
    conf.write_text(CONFIG_TEMPLATE.format(prefix=prefix, sharedir=state.SHARE_DIR))
    # `#!/usr/bin/env python3` finds this interpreter first: faster than a pyenv shim per call.
    pybin = base / "emu-python"
    pybin.mkdir()
    (pybin / "python3").symlink_to(sys.executable)
    env = dict(os.environ)
    env.update(
        PATH=os.pathsep.join([str(EMU_BIN), str(pybin), env.get("PATH", "/usr/bin:/bin")]),
        BASTILLE_CONFIG=str(conf),
        NO_COLOR="1",
    )
    env.pop("BASTILLE_EMU_FAIL", None)
    emu = BastilleEmulator(prefix=prefix, conf_path=conf, env=env, release=release or DEFAULT_RELEASE)
    if release:
        r = emu.run("bootstrap", release)
        assert r.returncode == 0, f"bootstrap failed:\n{r.stdout}\n{r.stderr}"
    return emu


@pytest.fixture(name="bastille_emulator")
def bastille_emulator_fixture(tmp_path: Path) -> Iterator[BastilleEmulator]:
    """A fresh emulated bastille with ``14.3-RELEASE`` bootstrapped; jails are killed afterwards."""
    emu = make_emulator(tmp_path / "bastille-emu")
    try:
        yield emu
    finally:
        emu.stop_all()
