"""Where this host's backend keeps a tenant's jail, by this host's own records: never a path the
shared store names (any host of a hive can write that row; review R1's sibling)."""

from pathlib import Path

from colibri.adapters.jail import JailBackend
from colibri.errors import SecretsError
from colibri.services.lifecycle.adoption import Adoption
from colibri.services.lifecycle.layout import recorded_local_home


def jail_root_of(state_dir: Path, backend: JailBackend, tenant_id: str, backend_name: str) -> Path:
    """The jail named after the tenant, or the one its adoption record (state_dir, root-only)
    names; a spawn-local tenant's home as spawn-local recorded it (state_dir/homes).
    SecretsError when the store says another backend than this host's."""
    if backend_name == "local":  # spawn-local: the home it checked, as it recorded it here
        home = recorded_local_home(state_dir, tenant_id)
        if home is None:
            raise SecretsError(f"tenant {tenant_id}: this host recorded no spawn-local home for it; not written")
        return home
    if backend_name != backend.name:
        raise SecretsError(
            f"tenant {tenant_id}: the store says backend {backend_name}, this host runs {backend.name}; not written"
        )
    jail = tenant_id
    if Adoption.path(state_dir, tenant_id).exists():
        jail = Adoption.load(state_dir, tenant_id, tenant_id).jail
    return backend.root(jail)
