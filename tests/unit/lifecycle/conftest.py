"""The lifecycle on the fake jail backend, through the real CLI: no root, no bubblewrap."""

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from colibri.cli.context import Adapters
from tests.fakes.jail import FakeJails

Cli = Callable[..., tuple[int, str, str]]


@pytest.fixture(name="fake")
def fake_fixture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeJails:
    skills = tmp_path / "skills"
    (skills / "mother/handlers").mkdir(parents=True)
    (skills / "mother/mother.py").write_text("# the fake's jails run their own mother\n")
    echo = skills / "mother/handlers/echo"
    echo.write_text("#!/bin/sh\ncat\n")
    echo.chmod(0o755)
    monkeypatch.setenv("COLIBRI_SKILLS_DIR", str(skills))
    return FakeJails(tmp_path / "jails", host_ids=False)


@pytest.fixture(name="cli")
def cli_fixture(fake: FakeJails, capsys: pytest.CaptureFixture[str]) -> Cli:
    """``colibri ARGS`` (the real main path, exit codes included) with the fake as its backend."""
    from colibri.cli.app import run

    def cli(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = run(list(args), adapters=Adapters(jail_backend=fake))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return cli


def show(cli: Cli, name: str) -> dict[str, object]:
    code, out, err = cli("show-tenant", name, "--json")
    assert code == 0, err
    record: dict[str, object] = json.loads(out)["data"]
    return record
