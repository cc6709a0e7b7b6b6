"""pytest fixtures; import the ones you use into your test module (or a conftest).

from tests.servers.vaultwarden.fixtures import bw_bin, vaultwarden  # noqa: F401
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .bwcli import INSTALL_HINT, find_bw
from .server import VaultwardenServer, start


@pytest.fixture
def vaultwarden() -> Iterator[VaultwardenServer]:
    """A fresh, empty server per test; seed it through ``vaultwarden.vault``."""
    server = start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def vaultwarden_module() -> Iterator[VaultwardenServer]:
    """One server shared by a module's tests, for sharing one (slow) bw login between them."""
    server = start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def bw_bin() -> Path:
    """Path of the pinned bw CLI. Missing bw skips locally but fails in CI, where it must exist."""
    from tests.conftest import require

    found = find_bw()
    require(found is not None, f"bw CLI not installed; run: {INSTALL_HINT}")
    assert found is not None
    return found
