"""The skills trust store belongs to the user colibri runs as (root on a host): a store of another
uid is refused, and an operator without root keeps one of their own under XDG paths (before, any
uid but 0 was refused with NeedsRoot)."""

import os
from pathlib import Path

import pytest

from colibri.adapters.skill_trust import TrustStore
from colibri.errors import PermissionDenied
from tests.conftest import require_root


def test_a_trust_store_is_taken_only_as_the_running_user_s(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    require_root("chown to another uid")
    directory = tmp_path / "state" / "supply"
    TrustStore(directory).write("root.pub", b"a root key\n")
    for path in (directory, directory / "root.pub"):
        os.chown(path, 1000, 1000)
    with pytest.raises(PermissionDenied, match="owned by uid 0"):
        TrustStore(directory).read("root.pub")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert TrustStore(directory).read("root.pub") == b"a root key\n"
