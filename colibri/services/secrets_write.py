"""Writing a tenant's rendered ``.env`` into its jail on this host, and recording it.

``EnvWriter`` needs neither the vault nor the operator's credentials: the orchestrator's
``SecretsService`` (colibri/services/secrets.py) uses it for its own host's tenants, and a remote
host's ``write_env`` and ``spawn`` ops use it for the text the orchestrator sent.  The file rules
are envfile's (no-follow, 0600, owned by the jail's user, atomic, the old file kept on any error);
the jail is the one the store records, never a path a peer sent.
"""

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from colibri.adapters import envfile
from colibri.domain import TenantStatus
from colibri.errors import SecretsError, TenantNotFound
from colibri.store.audit_hooks import record
from colibri.store.db import Store
from colibri.store.models import utcnow
from colibri.store.repos import TenantRepo
from colibri.text import safe

JAIL_BACKENDS = ("sandbox", "bastille")
USERNS_BACKENDS = ("sandbox",)
"""Backends whose jail ids are shifted onto the tenant's block by a user namespace: the jail's
passwd says 1001, the host sees uid_base + 1001 (a bastille jail's passwd holds host ids)."""


@dataclass(frozen=True)
class EnvTarget:
    """Where a tenant's ``.env`` goes on this host: its jail (or home) as the store records it."""

    tenant_id: str
    backend: str | None
    jail_root: str | None
    uid_base: int | None = None


JailRootOf = Callable[[str, str], Path]
"""``jail_root_of(tenant, backend)``: where this host's own backend (and its root-only adoption
records) put the tenant's jail.  The store's ``jail_root`` must be that path: every host of a hive
can write the shared row, and a forged one would put a tenant's secrets in another's jail."""

SendEnv = Callable[[str, str, bytes, "str | None"], tuple[str, bool]]
"""``send_env(host, tenant, content, collection_id)`` → (path, changed): write a rendered .env on
another host (its ``write_env`` op, over SSH stdin); raises that host's error (RemoteError...)."""


class EnvWriter:
    """Writes a rendered ``.env`` into a jail of this host and records it in the store (secrets
    status, when it changed, the collection id), then tells the host's daemon.  No vault, no
    credentials: the same writer serves the orchestrator's own tenants and the text a remote
    host receives.  The file rules are envfile's: no-follow, 0600, owned by the jail's user,
    atomic, the old file kept on any error."""

    def __init__(
        self,
        store: Store,
        jail_user: str,
        allowed_roots: tuple[Path, ...],
        secrets_changed: Callable[[str], None] | None = None,
        jail_root_of: JailRootOf | None = None,
        digest: Callable[[bytes], str] | None = None,
    ) -> None:
        self._store = store
        self._digest = digest  # the audit's keyed digest of a .env (adapters/audit_digest.py)
        self._jail_user = jail_user
        self._allowed = allowed_roots
        self._secrets_changed = secrets_changed  # tells the tenant's running agents to reload
        self._jail_root_of = jail_root_of  # None: the store's jail_root is taken as it is

    def target(self, tenant_id: str) -> EnvTarget:
        """The tenant's jail as the store has it (never a path a peer sent).  TenantNotFound."""
        with self._store.session() as session:
            tenant = TenantRepo(session).get(tenant_id)
            if tenant is None or tenant.status == TenantStatus.REMOVED:
                raise TenantNotFound(tenant_id)
            return EnvTarget(tenant.tenant_id, tenant.backend, tenant.jail_root, tenant.uid_base)

    def deliver(self, target: EnvTarget, content: bytes, collection_id: str | None = None) -> tuple[Path, bool]:
        """Stage, record (``ok``), install, and when the file changed tell the daemon.  The entry
        and the write are one unit: the new file is staged beside the old one, the entry is
        committed, and only then is the file renamed into place; an entry that cannot be recorded
        (StoreError) leaves the jail's previous .env (or none).  Raises SecretsError or
        PermissionDenied (nothing written, nothing recorded), StoreError (nothing written)."""
        with self.staged(target, content) as (path, install):
            changed = install is not None
            provisioned = {"keys": env_key_names(content), "digest": self.digest(content), "changed": changed}
            self.mark(
                target.tenant_id, "ok", None, changed=changed, collection_id=collection_id, provisioned=provisioned
            )
            if install is not None:
                # A rename in the directory the staged file was made in: a failure (SecretsError)
                # leaves the old .env, and the log says so right after the entry that announced the
                # new one: ``secrets.provision`` failed, the same digest, ``installed: false``.
                try:
                    install()
                except SecretsError as exc:
                    undone = {**provisioned, "changed": False, "installed": False}
                    self.mark(target.tenant_id, "stale", str(exc), provisioned=undone)
                    raise
        if changed and self._secrets_changed is not None:
            self._secrets_changed(target.tenant_id)
        return path, changed

    @contextmanager
    def staged(self, target: EnvTarget, content: bytes) -> Iterator[tuple[Path, envfile.Install | None]]:
        """The tenant's new .env staged in its jail (envfile.staged_env): its path and installer
        (None: unchanged).  Not installed, it is removed on exit."""
        if not target.jail_root or target.backend is None:
            raise SecretsError(f"tenant {target.tenant_id} has no jail yet: spawn it first")
        root = Path(target.jail_root)
        expected = self._jail_root_of
        checked = expected is not None and target.backend in (*JAIL_BACKENDS, "local")
        if checked:
            envfile.check_allowed(root, self._allowed)  # its own refusal first: outside the allowed roots
        if checked and expected is not None and root != expected(target.tenant_id, target.backend):
            raise SecretsError(
                f"tenant {target.tenant_id}: the store names {safe(str(root)[:256])} as its jail's root, not "
                "where this host's backend keeps its jail; not written (check the tenant's row: colibri reconcile)"
            )
        if target.backend in JAIL_BACKENDS:
            shift = (target.uid_base or 0) if target.backend in USERNS_BACKENDS else 0
            with envfile.staged_jail_env(root, self._jail_user, content, self._allowed, id_shift=shift) as staged:
                yield staged
        elif target.backend == "local":
            with envfile.staged_home_env(root, content, self._allowed) as staged:
                yield staged
        else:
            raise SecretsError(f"tenant {target.tenant_id}: unknown jail backend {target.backend!r}")

    def mark(
        self,
        tenant_id: str,
        status: str,
        error: str | None,
        *,
        changed: bool = False,
        collection_id: str | None = None,
        provisioned: Mapping[str, object] | None = None,
    ) -> None:
        now = utcnow()
        with self._store.session() as session:
            tenant = TenantRepo(session).get_for_update(tenant_id)
            if tenant is None:
                return
            tenant.secrets_status = status
            tenant.secrets_error = error[:2000] if error else None
            if status != "stale":
                tenant.secrets_checked_at = now
            if changed:
                tenant.secrets_changed_at = now
            if collection_id is not None:
                tenant.collection_id = collection_id
            outcome = "ok" if status in ("ok", "none") else "failed"
            record(session, "secrets.provision" if provisioned is not None else "secrets.status", f"tenant:{tenant_id}",
                   tenant=tenant_id, outcome=outcome, status=status, error=error, fields=provisioned)  # fmt: skip

    def digest(self, content: bytes) -> str | None:
        """The audit's keyed digest of a rendered ``.env`` (never a plain hash: see
        adapters/audit_digest.py); None when this writer has no key."""
        return self._digest(content) if self._digest is not None else None


def env_key_names(content: bytes) -> list[str]:
    """The key names of a rendered ``.env`` (never a value), at most 64 of them: only its real key
    lines, never a line of a multi-line value (envfile.key_names)."""
    return envfile.key_names(content)
