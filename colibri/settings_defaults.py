"""Where colibri keeps things when the settings do not say: hier(7) for root, XDG for other users."""

import os
import sys
from pathlib import Path
from typing import Literal

SYSTEM_CONFIG = Path("/usr/local/etc/colibri/colibri.toml")


def is_root() -> bool:
    return os.geteuid() == 0


def xdg(var: str, fallback: str) -> Path:
    value = os.environ.get(var)
    return Path(value) if value else Path.home() / fallback


def default_config_path() -> Path:
    if is_root():
        return SYSTEM_CONFIG
    return xdg("XDG_CONFIG_HOME", ".config") / "colibri" / "colibri.toml"


def default_state_dir() -> Path:
    return Path("/var/db/colibri") if is_root() else xdg("XDG_DATA_HOME", ".local/share") / "colibri"


def default_run_dir() -> Path:
    if is_root():
        return Path("/var/run/colibri")
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    return Path(runtime) / "colibri" if runtime else default_state_dir() / "run"


def default_log_dir() -> Path:
    return Path("/var/log/colibri") if is_root() else xdg("XDG_STATE_HOME", ".local/state") / "colibri"


def default_backend() -> Literal["bastille", "sandbox"]:
    return "bastille" if sys.platform.startswith("freebsd") else "sandbox"


def default_credentials_dir() -> Path:
    if is_root():
        return Path("/usr/local/etc/colibri/credentials")
    return default_config_path().parent / "credentials"


def default_ssh_key_file() -> Path:
    if is_root():
        return Path("/usr/local/etc/colibri/ssh/id_ed25519")
    return default_config_path().parent / "ssh" / "id_ed25519"
