"""What a process in a sandbox jail can and cannot reach (the sandbox backend's promises)."""

import os
import shutil
from pathlib import Path

import pytest

from colibri.adapters.runner import ShRunner
from colibri.adapters.sandbox import Sandbox
from colibri.resources import shipped
from tests.conftest import require


@pytest.fixture(name="jail")
def jail_fixture(tmp_path: Path) -> Sandbox:
    require(shutil.which("bwrap") is not None, "bubblewrap")
    require(os.geteuid() == 0, "root")
    sandbox = Sandbox(tmp_path / "jails", shipped("jails"), "agent", ShRunner({"PATH": os.environ["PATH"]}))
    sandbox.create("iso", ip=None, template="colibri/agent")
    sandbox.start("iso")
    yield sandbox
    sandbox.destroy("iso")


def test_root_in_the_jail_has_no_admin_capabilities(jail: Sandbox) -> None:
    caps = jail.exec("iso", ["/bin/sh", "-c", "grep CapEff /proc/self/status"]).out.split()[1]
    assert int(caps, 16) & (1 << 21) == 0  # CAP_SYS_ADMIN
    assert int(caps, 16) & (1 << 16) == 0  # CAP_SYS_MODULE
    mounted = jail.exec("iso", ["/bin/sh", "-c", "mount -t tmpfs none /mnt 2>&1; umount /usr/local 2>&1"])
    assert "permission denied" in mounted.out.lower() or mounted.exit_code != 0
    init_caps = jail.exec("iso", ["/bin/sh", "-c", "grep CapEff /proc/1/status /proc/2/status"]).out
    assert "0000003fffffffff" not in init_caps and "000001fffeffffff" not in init_caps


def test_the_jail_sees_its_own_files_and_no_network(jail: Sandbox) -> None:
    passwd = jail.exec("iso", ["/bin/cat", "/etc/passwd"]).out
    assert passwd == (jail.root("iso") / "etc/passwd").read_text()
    links = jail.exec("iso", ["/bin/sh", "-c", "ls /sys/class/net 2>/dev/null || cat /proc/net/dev"]).out
    assert "lo" in links
    assert "eth" not in links and "ens" not in links
    assert jail.exec("iso", ["/bin/sh", "-c", "test -e /root/.pyenv || test -e /work"]).exit_code != 0
