from pathlib import Path

import pytest

from colibri.errors import ConfigError
from colibri.settings import describe, load_settings, mask_url


def test_defaults_file_then_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "c.toml"
    config.write_text('jail_user = "worker"\nspawn_parallelism = 2\n')
    monkeypatch.setenv("COLIBRI_SPAWN_PARALLELISM", "8")
    settings, sources = load_settings(config)
    assert settings.jail_user == "worker"
    assert sources["jail_user"] == f"file:{config}"
    assert settings.spawn_parallelism == 8
    assert sources["spawn_parallelism"] == "env:COLIBRI_SPAWN_PARALLELISM"
    assert sources["jail_template"] == "default"


def test_missing_explicit_config_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(tmp_path / "nope.toml")


def test_malformed_config(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("jail_user = \n")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_settings(config)


def test_unknown_setting(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('jail_usr = "x"\n')
    with pytest.raises(ConfigError, match="unknown setting 'jail_usr'"):
        load_settings(config)


def test_invalid_value_names_its_origin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLIBRI_SPAWN_PARALLELISM", "lots")
    with pytest.raises(ConfigError, match=r"invalid setting spawn_parallelism \(from COLIBRI_SPAWN_PARALLELISM\)"):
        load_settings()


def test_database_password_is_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLIBRI_DATABASE_URL", "postgresql+psycopg://colibri:s3cret@db:5432/colibri")
    settings, _ = load_settings()
    shown = describe(settings)
    assert "s3cret" not in str(shown)
    assert shown["database_url"] == "postgresql+psycopg://colibri:***@db:5432/colibri"
    assert mask_url("sqlite:////var/db/colibri/colibri.db") == "sqlite:////var/db/colibri/colibri.db"
    assert "pa/ss" not in mask_url("postgresql://colibri:pa/ss@db/colibri")  # a '/' in the password


def test_sample_config_documents_every_setting() -> None:
    from colibri.settings import Settings
    from tests.conftest import REPO

    sample = (REPO / "etc" / "colibri.toml.sample").read_text()
    for name in Settings.model_fields:
        assert f"# {name} = " in sample or f"\n{name} = " in sample, name
        assert f"COLIBRI_{name.upper()}" in sample, name
