"""The composition root: settings → store → adapters → services, built lazily on first use.

Nothing heavy is imported until a command needs it, so ``colibri --help`` stays fast.
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from colibri.services.tenants import TenantService
    from colibri.settings import Settings
    from colibri.store.db import Store


@dataclass
class Context:
    config_path: Path | None = None
    debug: bool = False
    _settings: "Settings | None" = None
    _sources: dict[str, str] = field(default_factory=dict)
    _store: "Store | None" = None

    @property
    def settings(self) -> "Settings":
        if self._settings is None:
            from colibri.settings import load_settings

            self._settings, self._sources = load_settings(self.config_path)
        return self._settings

    @property
    def sources(self) -> dict[str, str]:
        _ = self.settings
        return self._sources

    @property
    def store(self) -> "Store":
        if self._store is None:
            from colibri.store.db import Store

            self._store = Store(self.settings.database, self.settings.database_timeout)
        return self._store

    def tenants(self) -> "TenantService":
        from colibri.services.tenants import TenantService

        return TenantService(self.store, self.settings.host)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()


def get(ctx: typer.Context) -> Context:
    obj: Any = ctx.find_root().obj
    assert isinstance(obj, Context)
    return obj
