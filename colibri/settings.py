"""Settings: defaults, then the TOML config file, then ``COLIBRI_*`` environment variables.

The config file is ``/usr/local/etc/colibri/colibri.toml`` for root (``$XDG_CONFIG_HOME/colibri/
colibri.toml`` otherwise), or the path in ``COLIBRI_CONFIG`` or ``--config``.  Every field is
documented in ``etc/colibri.toml.sample``.  Paths follow hier(7) for root and XDG for other users,
so a newcomer can try colibri without root.
"""

import ipaddress
import os
import re
import stat
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, SettingsError

from colibri.errors import ConfigError
from colibri.settings_defaults import (
    default_backend,
    default_config_path,
    default_credentials_dir,
    default_log_dir,
    default_run_dir,
    default_ssh_key_file,
    default_state_dir,
)

ENV_PREFIX = "COLIBRI_"
WEEK = 7 * 86400.0
MAX_CONFIG_BYTES = 1 << 20
MAX_TEXT = 4096
"""The longest text setting (PATH_MAX; a name or URL is far shorter)."""
_PATHS = (
    "state_dir", "run_dir", "log_dir", "bastille_config", "bastille_prefix", "sandbox_dir", "skills_dir",
    "vault_credentials_dir", "staged_secrets_dir", "vault_ca_file", "secrets_allowed_roots", "ssh_key_file",
    "pkg_fingerprints_dir",
)  # fmt: skip
_NAMES = ("host", "jail_template", "jail_user", "bastille_path", "bastille_release", "bw_path", "jail_ip_pool")
_OPTIONAL_TEXT = (
    "database_url", "vault_url", "vault_organization_id", "metrics_address", "skills_repository", "pkg_repository_url",
)  # fmt: skip
_DATABASE_URL = re.compile(r"(sqlite|postgresql)(\+[A-Za-z0-9_]+)?://.*", re.DOTALL)
_HTTP_URL = re.compile(r"https?://[^\s/?#]+(/\S*)?")
_PKG_URL = r"^((pkg\+)?https?://[^\s/?#\"'\\]+|file://)/[^\s\"'\\]*$"


def _check_text(value: str, *, empty_ok: bool) -> str:
    """A setting's text: no control character, no lone surrogate (a non-UTF-8 environment), and
    not empty unless allowed (an empty path would silently be the current directory)."""
    if not value and not empty_ok:
        raise ValueError("empty; unset it to get the default")
    if len(value) > MAX_TEXT:
        raise ValueError(f"{len(value)} characters; at most {MAX_TEXT}")
    for ch in value:
        if ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0 or 0xD800 <= ord(ch) < 0xE000:
            raise ValueError(f"contains the control character or invalid byte {ch!r}; refused")
    return value


class Settings(BaseSettings):
    """Every colibri setting.  Environment variables are ``COLIBRI_`` + the upper-cased name."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", validate_default=True)

    # where things live
    state_dir: Path = Field(default_factory=default_state_dir)
    run_dir: Path = Field(default_factory=default_run_dir)
    log_dir: Path = Field(default_factory=default_log_dir)
    database_url: str | None = None
    database_timeout: float = Field(default=5.0, gt=0, le=3600, allow_inf_nan=False)
    host: str = Field(default_factory=lambda: os.uname().nodename)

    # jails
    jail_backend: Literal["bastille", "sandbox"] = Field(default_factory=default_backend)
    jail_template: str = "colibri/agent"
    jail_user: str = "agent"
    bastille_path: str = "bastille"
    bastille_config: Path | None = None
    bastille_release: str = "14.3-RELEASE"
    bastille_prefix: Path = Path("/usr/local/bastille")
    jail_ip_pool: str = "10.17.89.0/24"
    sandbox_dir: Path | None = None
    spawn_parallelism: int = Field(default=4, ge=1, le=64)
    spawn_reservation_ttl: float = Field(default=900.0, ge=1, le=WEEK, allow_inf_nan=False)
    skills_dir: Path | None = None
    skills_repository: str | None = None  # issue 13: a directory or an http(s) URL (adapters/skill_repo.py)
    skills_fetch_timeout: float = Field(default=10.0, gt=0, le=300, allow_inf_nan=False)
    pkg_repository_url: str | None = Field(default=None, pattern=_PKG_URL)  # issue 13: adapters/bastille/pkgrepo.py
    pkg_fingerprints_dir: Path | None = None

    # isolation (issue 8): each tenant's block of host ids, and every agent jail's resource limits
    tenant_uid_base: int = Field(default=1_000_000_000, ge=100_000, le=2**31 - 1)
    tenant_uid_blocks: int = Field(default=16_384, ge=1, le=32_768)
    jail_memory_mib: int = Field(default=1024, ge=64, le=2**30)
    jail_max_processes: int = Field(default=256, ge=16, le=2**22)
    jail_open_files: int = Field(default=1024, ge=64, le=2**30)
    jail_cpu_percent: int = Field(default=100, ge=1, le=6400)

    # secrets
    vault_url: str | None = None
    vault_organization_id: str | None = None
    vault_credentials_dir: Path = Field(default_factory=default_credentials_dir)
    bw_path: str = "bw"
    bw_timeout: float = Field(default=60.0, gt=0, le=3600, allow_inf_nan=False)
    staged_secrets_dir: Path | None = None
    vault_ca_file: Path | None = None
    secrets_allowed_roots: list[Path] | None = None

    # hosts of a hive, driven over SSH (issue 11)
    ssh_key_file: Path = Field(default_factory=default_ssh_key_file)
    ssh_connect_timeout: float = Field(default=10.0, gt=0, le=600, allow_inf_nan=False)
    ssh_op_timeout: float = Field(default=120.0, gt=0, le=3600, allow_inf_nan=False)
    ssh_channels: int = Field(default=4, ge=1, le=10)

    # daemon
    heartbeat_interval: float = Field(default=10.0, gt=0, le=3600, allow_inf_nan=False)
    heartbeat_rate_limit: float = Field(default=200.0, gt=0, le=1e6, allow_inf_nan=False)
    agent_stale_after: float = Field(default=30.0, gt=0, le=WEEK, allow_inf_nan=False)
    agent_lost_after: float = Field(default=90.0, gt=0, le=WEEK, allow_inf_nan=False)
    task_lease_seconds: float = Field(default=300.0, gt=0, le=WEEK, allow_inf_nan=False)
    task_max_attempts: int = Field(default=3, ge=1, le=1000)
    # many hosts (issue 11): this daemon's lease on its own hosts row; lost past lease + grace
    heartbeat_write_interval: float = Field(default=60.0, ge=0, le=3600, allow_inf_nan=False)
    host_lease_seconds: float = Field(default=30.0, ge=1, le=3600, allow_inf_nan=False)
    host_lease_grace: float = Field(default=10.0, ge=0, le=3600, allow_inf_nan=False)
    daemon_outbox_max_bytes: int = Field(default=64 * 1024 * 1024, ge=64 * 1024, le=2**34)
    task_poll_interval: float = Field(default=1.0, ge=0.05, le=3600, allow_inf_nan=False)
    reconcile_interval: float = Field(default=300.0, ge=0, le=WEEK, allow_inf_nan=False)
    metrics_address: str | None = None
    log_target: Literal["stderr", "syslog"] = "stderr"
    # daemon: what one tenant (one socket) may consume (issue 8); see etc/colibri.toml.sample
    daemon_max_connections_per_socket: int = Field(default=64, ge=2)
    daemon_admin_max_connections: int = Field(default=128, ge=2)
    daemon_fd_reserve: int = Field(default=256, ge=32)
    daemon_request_timeout: float = Field(default=30.0, gt=0)
    daemon_idle_timeout: float = Field(default=120.0, gt=0)
    daemon_max_header_bytes: int = Field(default=16 * 1024, ge=1024, le=1024 * 1024)
    daemon_max_body_bytes: int = Field(default=1024 * 1024, ge=4096, le=64 * 1024 * 1024)
    daemon_max_small_body_bytes: int = Field(default=16 * 1024, ge=1024, le=1024 * 1024)
    daemon_socket_request_rate: float = Field(default=200.0, ge=0)
    daemon_socket_request_burst: float = Field(default=400.0, ge=0)
    daemon_socket_byte_rate: float = Field(default=2 * 1024 * 1024, ge=0)
    daemon_socket_byte_burst: float = Field(default=4 * 1024 * 1024, ge=0)
    tenant_max_agents: int = Field(default=32, ge=1)
    tenant_max_queued_tasks: int = Field(default=1000, ge=1)
    tenant_max_queued_payload_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    tenant_max_finished_tasks: int = Field(default=1000, ge=1)
    tenant_max_finished_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    task_retention_seconds: float = Field(default=7 * 86400.0, ge=1, allow_inf_nan=False)
    task_max_result_bytes: int = Field(default=256 * 1024, ge=1024, le=16 * 1024 * 1024)
    # audit (issue 12): the daemon signs this host's checkpoint when this much is unsigned
    audit_checkpoint_seconds: float = Field(default=10.0, ge=0.1, le=3600, allow_inf_nan=False)
    audit_checkpoint_entries: int = Field(default=256, ge=1, le=1_000_000)
    log_rate_limit_lines: int = Field(default=20, ge=1)
    log_rate_limit_interval: float = Field(default=10.0, gt=0)

    @field_validator(*_PATHS, mode="before")
    @classmethod
    def _path(cls, value: Any) -> Any:
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str | Path):
                text = _check_text(str(item), empty_ok=False)
                if not os.path.isabs(text):
                    raise ValueError(f"{text!r} is not an absolute path")
        return value

    @field_validator(*_NAMES, mode="before")
    @classmethod
    def _name(cls, value: Any) -> Any:
        return _check_text(value, empty_ok=False) if isinstance(value, str) else value

    @field_validator(*_OPTIONAL_TEXT, mode="before")
    @classmethod
    def _optional_text(cls, value: Any) -> Any:
        return _check_text(value, empty_ok=True) if isinstance(value, str) else value

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str | None) -> str | None:
        if value and not _DATABASE_URL.fullmatch(value):
            raise ValueError(
                "colibri supports sqlite:///PATH and postgresql+psycopg://USER@HOST/DB URLs "
                f"(the postgres extra), not {value.split(':', 1)[0][:40]!r}"
            )
        return value

    @field_validator("vault_url")
    @classmethod
    def _vault_url(cls, value: str | None) -> str | None:
        if value and not _HTTP_URL.fullmatch(value):
            raise ValueError("not an http(s) URL such as https://vault.example.org")
        return value

    @field_validator("jail_ip_pool")
    @classmethod
    def _ip_pool(cls, value: str) -> str:
        try:
            network = ipaddress.ip_network(value, strict=False)
        except ValueError as exc:
            raise ValueError(f"not an IP network such as 10.17.89.0/24: {exc}") from None
        if network.num_addresses < 4:
            raise ValueError("the pool needs at least a /30 (IPv4) or /126 (IPv6)")
        return value

    @field_validator("tenant_uid_blocks")
    @classmethod
    def _uid_blocks(cls, value: int, info: ValidationInfo) -> int:
        base = info.data.get("tenant_uid_base")
        # uid_t is 32 bits, but much software still keeps uids in a signed int: stay below 2**31.
        if isinstance(base, int) and base + value * 65536 > 2**31 - 1:
            raise ValueError(f"tenant_uid_base + tenant_uid_blocks * 65536 must stay below 2**31 (base {base})")
        return value

    @property
    def database(self) -> str:
        """The SQLAlchemy URL of the store."""
        return self.database_url or f"sqlite:///{self.state_dir / 'colibri.db'}"

    @property
    def jails_dir(self) -> Path:
        """Where the sandbox backend keeps its jail roots."""
        return self.sandbox_dir or self.state_dir / "jails"

    @property
    def allowed_secret_roots(self) -> list[Path]:
        """Where provisioning may write a .env: bastille's and the sandbox's jail directories."""
        if self.secrets_allowed_roots is not None:
            return list(self.secrets_allowed_roots)
        return [self.bastille_prefix / "jails", self.jails_dir]

    @property
    def staged_dir(self) -> Path:
        """Where operators stage a tenant's ``provider.env`` (root-only)."""
        return self.staged_secrets_dir or self.state_dir / "staged"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment wins over the file; the file's values arrive as init kwargs.
        return (env_settings, init_settings)


def config_path(explicit: Path | None) -> tuple[Path, bool]:
    """The config file to read, and whether the operator named it (then it must exist)."""
    if explicit is not None:
        return explicit, True
    from_env = os.environ.get("COLIBRI_CONFIG")
    if from_env == "":
        raise ConfigError("COLIBRI_CONFIG is empty; unset it to read the default config file")
    if from_env:
        return Path(from_env), True
    return default_config_path(), False


def read_config_file(path: Path, required: bool) -> dict[str, Any]:
    """Parse the TOML config file; a missing default file is empty, anything else bad is ConfigError."""
    try:
        # Non-blocking, and a regular file only: COLIBRI_CONFIG naming a FIFO must not hang us.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise ConfigError(f"config file {_shown(path)} is not a regular file")
            raw = os.read(fd, MAX_CONFIG_BYTES + 1)
        finally:
            os.close(fd)
    except FileNotFoundError:
        if required:
            raise ConfigError(f"config file not found: {_shown(path)}") from None
        return {}
    except OSError as exc:
        raise ConfigError(f"cannot read config file {_shown(path)}: {exc.strerror}") from None
    except ValueError:  # a NUL in the path
        raise ConfigError("the config file's path contains a NUL byte") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"config file {_shown(path)} is larger than {MAX_CONFIG_BYTES} bytes")
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {_shown(path)} is not UTF-8 text (byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {_shown(path)} is not valid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"config file {_shown(path)} is not valid TOML: nested too deeply") from None
    unknown = sorted(set(data) - set(Settings.model_fields))
    if unknown:
        raise ConfigError(f"config file {_shown(path)}: unknown setting {unknown[0][:60]!r}")
    return data


def _shown(path: Path) -> str:
    text = str(path)
    return text if len(text) <= 200 else f"{text[:200]}... ({len(text)} characters)"


def load_settings(explicit: Path | None = None) -> tuple[Settings, dict[str, str]]:
    """Build the settings and say where each value came from (``default``, ``file:PATH``, ``env:NAME``)."""
    path, required = config_path(explicit)
    data = read_config_file(path, required)
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        first = exc.errors()[0]
        name = str(first["loc"][0]) if first["loc"] else "settings"
        origin = f"{ENV_PREFIX}{name.upper()}" if f"{ENV_PREFIX}{name.upper()}" in os.environ else _shown(path)
        message = first["msg"].removeprefix("Value error, ")
        raise ConfigError(f"invalid setting {name} (from {origin}): {message[:300]}") from None
    except (SettingsError, RecursionError) as exc:
        # pydantic-settings parses list settings from the environment as JSON
        found = re.search(r'field "(\w+)"', str(exc))
        lists = [n for n, f in Settings.model_fields.items() if "list" in str(f.annotation)]
        name = found.group(1) if found else next((n for n in lists if f"{ENV_PREFIX}{n.upper()}" in os.environ), "?")
        raise ConfigError(
            f"invalid setting {name} (from {ENV_PREFIX}{name.upper()}): not a JSON list such as "
            '["/path/one", "/path/two"]'
        ) from None
    sources: dict[str, str] = {}
    for name in Settings.model_fields:
        env_name = f"{ENV_PREFIX}{name.upper()}"
        if env_name in os.environ:
            sources[name] = f"env:{env_name}"
        elif name in data:
            sources[name] = f"file:{path}"
        else:
            sources[name] = "default"
    return settings, sources


def describe(settings: Settings) -> dict[str, Any]:
    """The effective settings as plain JSON-able values, secrets masked."""
    shown: dict[str, Any] = {}
    for name in Settings.model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            shown[name] = "********"
        elif name == "database_url" and value:
            shown[name] = mask_url(value)
        elif isinstance(value, Path):
            shown[name] = str(value)
        elif isinstance(value, list):
            shown[name] = [str(v) if isinstance(v, Path) else v for v in value]
        else:
            shown[name] = value
    return shown


def mask_url(url: str) -> str:
    """Hide the password of a URL such as ``postgresql://user:pw@host/db`` (SQLAlchemy's parser)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<not a database URL>"
