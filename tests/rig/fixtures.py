"""The ``rig`` fixture (module-scoped: one rig per test file, per xdist worker); see tests/rig."""

import os
import shutil
from collections.abc import Iterator

import pytest

from tests.rig import SSHD, Rig, build, teardown


@pytest.fixture(name="rig", scope="module")
def rig_fixture() -> Iterator[Rig]:
    from tests.conftest import require
    from tests.servers.postgres import _pg_bindir

    require(os.geteuid() == 0, "root (network namespaces)")
    require(SSHD.exists(), "OpenSSH server /usr/sbin/sshd (Debian package openssh-server)")
    require(shutil.which("ip") is not None, "ip(8) (Debian package iproute2)")
    require(shutil.which("ssh-keygen") is not None, "ssh-keygen (Debian package openssh-client)")
    require(_pg_bindir() is not None, "PostgreSQL server binaries (Debian package postgresql)")
    rig = build()
    try:
        yield rig
    finally:
        teardown(rig)
