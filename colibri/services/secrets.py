"""Provisioning a tenant's secrets into a 0600 ``.env`` inside its jail (or home, for spawn-local).

Sources, in this order:
1. a staged ``<staged_dir>/<tenant>/provider.env`` on the host (root-only), if present;
2. nothing, when the tenant has no collection (``collection_name`` NULL): a no-op that says so;
3. the tenant's Vaultwarden collection, resolved by name within the organization; its id is
   stored, so a renamed or deleted collection is detected and reported.

Fail-closed: any error leaves the previous ``.env`` exactly as it was, marks the tenant's secrets
``stale`` with the reason, and is raised (``provision``) or reported (``provision_all``).  Every
refusal is a SecretsError (exit 12), whatever its cause (the vault, an unsafe path or file, the
operator's credentials, bw missing or timed out): the cause is in the message.  All the bad keys
and values of a tenant are named at once (SecretsRefused).  One tenant costs one unlock and one
sync, and only its own collection's items are listed (bw filters); a batch costs one unlock, one
sync and one listing of the organization's items, however many tenants, and keeps only the items
of the tenants' collections.  ``secrets_changed_at`` moves only when a ``.env`` really changed:
the daemon's cue to tell the agent.

Two halves: ``SecretsService`` resolves and renders (it holds the vault and the operator's
credentials, so it runs only on the orchestrator); ``EnvWriter`` writes a rendered text into a
jail of this host and records it (it needs neither, so a remote host's ``write_env`` and ``spawn``
ops use it for the text the orchestrator sent).  A tenant on another host is written through
``send_env`` (its host's op over SSH): only the rendered text travels.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from colibri.adapters import envfile
from colibri.adapters.bitwarden_output import Selector, VaultCollection, VaultItem, VaultSnapshot
from colibri.adapters.credentials import OperatorCredentials, read_staged
from colibri.domain import TenantStatus
from colibri.errors import ColibriError, NotFound, RemoteError, SecretsError, StoreError, TenantNotFound
from colibri.services.secrets_report import ProvisionResult, interrupted
from colibri.store.db import Store
from colibri.store.models import Tenant, utcnow
from colibri.store.repos import TenantRepo

JAIL_BACKENDS = ("sandbox", "bastille")
USERNS_BACKENDS = ("sandbox",)
"""Backends whose jail ids are shifted onto the tenant's block by a user namespace: the jail's
passwd says 1001, the host sees uid_base + 1001 (a bastille jail's passwd holds host ids)."""


class VaultReader(Protocol):
    def snapshot(self, credentials: OperatorCredentials, select: Selector | None = None) -> VaultSnapshot: ...


class CredentialSource(Protocol):
    def load(self) -> OperatorCredentials: ...


@dataclass(frozen=True)
class SecretsConfig:
    host: str
    jail_user: str
    staged_dir: Path
    allowed_roots: tuple[Path, ...]
    organization_id: str | None = None


@dataclass(frozen=True)
class _Plan:
    tenant_id: str
    host: str
    collection_name: str | None
    collection_id: str | None
    backend: str | None
    jail_root: str | None
    staged: str | None  # the staged provider.env text
    staged_error: ColibriError | None = None
    uid_base: int | None = None


@dataclass(frozen=True)
class EnvTarget:
    """Where a tenant's ``.env`` goes on this host: its jail (or home) as the store records it."""

    tenant_id: str
    backend: str | None
    jail_root: str | None
    uid_base: int | None = None


@dataclass(frozen=True)
class Rendered:
    """A tenant's ``.env``, rendered and not written.  ``content`` None: the tenant has no
    collection and nothing is staged (no secrets; nothing to write).  Never logged or shown."""

    tenant_id: str
    content: bytes | None = field(repr=False)
    source: str | None
    keys: tuple[str, ...]
    collection_id: str | None = None


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
    ) -> None:
        self._store = store
        self._jail_user = jail_user
        self._allowed = allowed_roots
        self._secrets_changed = secrets_changed  # tells the tenant's running agents to reload

    def target(self, tenant_id: str) -> EnvTarget:
        """The tenant's jail as the store has it (never a path a peer sent).  TenantNotFound."""
        with self._store.session() as session:
            tenant = TenantRepo(session).get(tenant_id)
            if tenant is None or tenant.status == TenantStatus.REMOVED:
                raise TenantNotFound(tenant_id)
            return EnvTarget(tenant.tenant_id, tenant.backend, tenant.jail_root, tenant.uid_base)

    def deliver(self, target: EnvTarget, content: bytes, collection_id: str | None = None) -> tuple[Path, bool]:
        """Write, record (``ok``), and when the file changed tell the daemon.  Raises
        SecretsError or PermissionDenied (nothing written, nothing recorded)."""
        path, changed = self.write(target, content)
        self.mark(target.tenant_id, "ok", None, changed=changed, collection_id=collection_id)
        if changed and self._secrets_changed is not None:
            self._secrets_changed(target.tenant_id)
        return path, changed

    def write(self, target: EnvTarget, content: bytes) -> tuple[Path, bool]:
        if not target.jail_root or target.backend is None:
            raise SecretsError(f"tenant {target.tenant_id} has no jail yet: spawn it first")
        root = Path(target.jail_root)
        if target.backend in JAIL_BACKENDS:
            shift = (target.uid_base or 0) if target.backend in USERNS_BACKENDS else 0
            return envfile.write_jail_env(root, self._jail_user, content, self._allowed, id_shift=shift)
        if target.backend == "local":
            return envfile.write_home_env(root, content, self._allowed)
        raise SecretsError(f"tenant {target.tenant_id}: unknown jail backend {target.backend!r}")

    def mark(
        self,
        tenant_id: str,
        status: str,
        error: str | None,
        *,
        changed: bool = False,
        collection_id: str | None = None,
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


class SecretsService:
    """Provision tenants' secrets.  Adapters and the store are given, never built here."""

    def __init__(
        self,
        store: Store,
        config: SecretsConfig,
        vault: VaultReader | None,
        credentials: CredentialSource,
        secrets_changed: Callable[[str], None] | None = None,
        send_env: SendEnv | None = None,
    ) -> None:
        self._store = store
        self._config = config
        self._vault = vault
        self._credentials = credentials
        self._writer = EnvWriter(store, config.jail_user, config.allowed_roots, secrets_changed)
        self._send_env = send_env  # None: a tenant of another host is not written from here

    def provision(self, tenant_id: str, *, rebind: bool = False, check: bool = True) -> ProvisionResult:
        """Provision one tenant; the spawn pipeline calls this before the agent starts.

        ``rebind`` forgets the stored collection id and resolves the name again.  Raises
        TenantNotFound, or (the tenant is then marked stale and its old .env is untouched)
        SecretsError whatever the cause: VaultLocked, SecretsRefused (every bad key and value),
        or the vault's, the path's, the credentials' or bw's failure in its message; StoreError.
        With ``check=False`` a failure is returned (outcome ``failed``, its ``error``), not raised.
        """
        with self._store.session() as session:
            tenant = TenantRepo(session).get(tenant_id)
            if tenant is None or tenant.status == TenantStatus.REMOVED:
                raise TenantNotFound(tenant_id)
            plan = self._plan(tenant)
        result = self._run([plan], rebind=rebind, batch=False)[0]
        if result.error is not None and check:
            raise result.error
        return result

    def provision_all(self) -> list[ProvisionResult]:
        """Provision every tenant that has a jail: one vault session for all.  With ``send_env``
        that is the tenants of every host (each remote one's text sent to its host), else this
        host's only.

        Failures are reported per tenant (outcome ``failed``), never raised, except a store error.
        """
        with self._store.session() as session:
            everywhere = self._send_env is not None
            tenants = [t for t in TenantRepo(session).find() if everywhere or t.host == self._config.host]
            plans = [self._plan(t) for t in tenants]
        return self._run(plans, rebind=False, batch=True)

    def render(self, tenant_id: str, *, rebind: bool = False) -> Rendered:
        """Resolve and render one tenant's ``.env`` without writing it, and without needing its
        jail: a remote tenant's spawn sends this text to its host.  Raises TenantNotFound, or
        (the tenant is then marked stale) SecretsError as ``provision`` does."""
        found = self.render_many([tenant_id], rebind=rebind)[tenant_id]
        if isinstance(found, ColibriError):
            raise found
        return found

    def render_many(self, tenant_ids: Sequence[str], *, rebind: bool = False) -> dict[str, Rendered | ColibriError]:
        """``render`` for several tenants with one vault session: each tenant's text, or its
        error (TenantNotFound; a refusal, the tenant then marked stale)."""
        answers: dict[str, Rendered | ColibriError] = {}
        plans = []
        with self._store.session() as session:
            repo = TenantRepo(session)
            for tenant_id in dict.fromkeys(tenant_ids):
                tenant = repo.get(tenant_id)
                if tenant is None or tenant.status == TenantStatus.REMOVED:
                    answers[tenant_id] = TenantNotFound(tenant_id)
                else:
                    plans.append(self._plan(tenant))
        snapshot, resolved, vault_error = self._resolve(plans, rebind, need_target=False)
        for plan in plans:
            try:
                answers[plan.tenant_id] = self._render(plan, snapshot, resolved, vault_error)
            except ColibriError as exc:
                refusal = as_refusal(exc)
                self._mark(plan.tenant_id, "stale", str(refusal))
                answers[plan.tenant_id] = refusal
        return {tenant_id: answers[tenant_id] for tenant_id in dict.fromkeys(tenant_ids)}

    # --- planning ------------------------------------------------------------------------------

    def _plan(self, tenant: Tenant) -> _Plan:
        staged, staged_error = None, None
        try:
            staged = read_staged(self._config.staged_dir, tenant.tenant_id)
        except ColibriError as exc:
            staged_error = exc
        return _Plan(
            tenant.tenant_id,
            tenant.host,
            tenant.collection_name,
            tenant.collection_id,
            tenant.backend,
            tenant.jail_root,
            staged,
            staged_error,
            tenant.uid_base,
        )

    def _run(self, plans: Sequence[_Plan], *, rebind: bool, batch: bool) -> list[ProvisionResult]:
        try:
            snapshot, resolved, vault_error = self._resolve(plans, rebind, need_target=True)
        except KeyboardInterrupt:
            if not batch:
                raise
            return interrupted([p.tenant_id for p in plans], [], in_hand=False)
        results: list[ProvisionResult] = []
        try:
            for plan in plans:
                results.append(self._guarded(plan, snapshot, resolved, vault_error, batch))
        except KeyboardInterrupt:
            if not batch:
                raise
            return interrupted([p.tenant_id for p in plans], results)
        return results

    def _resolve(
        self, plans: Sequence[_Plan], rebind: bool, *, need_target: bool
    ) -> tuple[VaultSnapshot | None, dict[str, str | ColibriError], ColibriError | None]:
        """One vault session for every plan that needs the vault (those with a jail to write
        to, unless ``need_target`` is False): the snapshot, each tenant's collection id (or why
        it has none), or the vault's error."""
        needs_vault = [
            p
            for p in plans
            if p.staged is None
            and not p.staged_error
            and p.collection_name
            and (not need_target or self._has_target(p))
        ]
        resolved: dict[str, str | ColibriError] = {}

        def select(collections: tuple[VaultCollection, ...]) -> set[str]:
            """Each tenant's collection id (or why it has none); only their items are listed."""
            for plan in needs_vault:
                try:
                    resolved[plan.tenant_id] = resolve_collection(
                        plan, collections, self._config.organization_id, rebind
                    )
                except SecretsError as exc:
                    resolved[plan.tenant_id] = exc
            return {found for found in resolved.values() if isinstance(found, str)}

        snapshot: VaultSnapshot | None = None
        vault_error: ColibriError | None = None
        if needs_vault:
            try:
                snapshot = self._snapshot(select)
            except ColibriError as exc:
                vault_error = exc
        return snapshot, resolved, vault_error

    def _guarded(
        self,
        plan: _Plan,
        snapshot: VaultSnapshot | None,
        resolved: dict[str, str | ColibriError],
        vault_error: ColibriError | None,
        batch: bool,
    ) -> ProvisionResult:
        """One tenant's result: a refusal marks it stale; in a batch so does a bug (only its type)."""
        try:
            return self._one(plan, snapshot, resolved, vault_error, batch)
        except ColibriError as exc:
            refusal = as_refusal(exc)
            self._mark(plan.tenant_id, "stale", str(refusal))
            return ProvisionResult(plan.tenant_id, "failed", message=str(refusal), error=refusal)
        except Exception as exc:
            if not batch:
                raise  # one tenant: the CLI's last resort reports it (with --debug, its traceback)
            # A bug met by one tenant (its jail may have gone looking for one) must not stop
            # the others; only the type is kept, the text may hold anything.
            error = ColibriError(f"internal error ({type(exc).__name__}) while provisioning {plan.tenant_id}")
            self._mark(plan.tenant_id, "stale", error.message)
            return ProvisionResult(plan.tenant_id, "failed", message=error.message, error=error)

    def _has_target(self, plan: _Plan) -> bool:
        here = plan.host == self._config.host or self._send_env is not None
        return here and bool(plan.jail_root) and plan.backend is not None

    def _snapshot(self, select: Selector) -> VaultSnapshot:
        if self._vault is None or not self._config.organization_id:
            raise SecretsError(
                "the vault is not configured (set vault_url and vault_organization_id), and no "
                f"provider.env is staged in {self._config.staged_dir}"
            )
        return self._vault.snapshot(self._credentials.load(), select)

    # --- one tenant ----------------------------------------------------------------------------

    def _one(
        self,
        plan: _Plan,
        snapshot: VaultSnapshot | None,
        resolved: dict[str, str | ColibriError],
        vault_error: ColibriError | None,
        batch: bool,
    ) -> ProvisionResult:
        if plan.staged_error is not None:
            raise plan.staged_error
        if plan.staged is None and not plan.collection_name:
            self._mark(plan.tenant_id, "none", None)
            return ProvisionResult(
                plan.tenant_id, "skipped", message="tenant has no collection: nothing to do", secrets_expected=False
            )
        if not self._has_target(plan):
            reason = self._no_target_reason(plan)
            if batch:
                return ProvisionResult(plan.tenant_id, "skipped", message=reason)
            raise SecretsError(reason)
        rendered = self._render(plan, snapshot, resolved, vault_error)
        assert rendered.content is not None and rendered.source is not None
        if plan.host == self._config.host:
            target = EnvTarget(plan.tenant_id, plan.backend, plan.jail_root, plan.uid_base)
            path, changed = self._writer.deliver(target, rendered.content, rendered.collection_id)
            where = str(path)
        else:
            assert self._send_env is not None
            where, changed = self._send_env(plan.host, plan.tenant_id, rendered.content, rendered.collection_id)
        source = rendered.source
        return ProvisionResult(
            plan.tenant_id,
            "written" if changed else "unchanged",
            source,
            where,
            rendered.keys,
            f"{len(rendered.keys)} keys from {source}" + ("" if changed else " (no change)"),
        )

    def _render(
        self,
        plan: _Plan,
        snapshot: VaultSnapshot | None,
        resolved: dict[str, str | ColibriError],
        vault_error: ColibriError | None,
    ) -> Rendered:
        """The tenant's .env text (its staged provider.env, else its collection's items), or
        ``content`` None when it has neither; every bad key and value raised at once."""
        if plan.staged_error is not None:
            raise plan.staged_error
        if plan.staged is None and not plan.collection_name:
            return Rendered(plan.tenant_id, None, None, ())
        collection_id = None
        problems: list[str] = []
        if plan.staged is not None:
            source = "staged provider.env"
            origin = f"{self._config.staged_dir}/{plan.tenant_id}/provider.env"
            entries = envfile.parse_lines(plan.staged, origin, problems)
        else:
            if vault_error is not None:
                raise vault_error
            assert snapshot is not None and plan.collection_name is not None
            source = f"collection {plan.collection_name}"
            found = resolved.get(plan.tenant_id)
            if isinstance(found, ColibriError):
                raise found
            assert found is not None, "select() resolved every tenant that needs the vault"
            collection_id = found
            entries = entries_of(snapshot.items, collection_id, problems)
        content = envfile.render(entries, f"secrets of tenant {plan.tenant_id} from {source}", problems)
        keys = tuple(sorted({e.key for e in entries}))
        return Rendered(plan.tenant_id, content, source, keys, collection_id)

    def _no_target_reason(self, plan: _Plan) -> str:
        if plan.host != self._config.host:
            return f"tenant {plan.tenant_id} runs on host {plan.host}, not on {self._config.host}"
        return f"tenant {plan.tenant_id} has no jail yet: spawn it first"

    def _mark(self, tenant_id: str, status: str, error: str | None) -> None:
        self._writer.mark(tenant_id, status, error)


def resolve_collection(
    plan: _Plan, collections: Sequence[VaultCollection], organization_id: str | None, rebind: bool
) -> str:
    """The id of the tenant's collection; a renamed, deleted or ambiguous one is an error."""
    name, stored, tenant = plan.collection_name, plan.collection_id, plan.tenant_id
    named = [c for c in collections if c.name == name]
    if len(named) > 1:
        raise SecretsError(f"{len(named)} collections are named {name!r} in the organization: rename all but one")
    if stored and not rebind:
        current = next((c for c in collections if c.id == stored), None)
        if current is None:
            hint = f"; a new collection of that name exists: 'colibri provision {tenant} --rebind' uses it"
            raise SecretsError(
                f"the collection {name!r} of tenant {tenant} (id {stored}) was deleted" + (hint if named else "")
            )
        if current.name != name:
            raise SecretsError(
                f"the collection of tenant {tenant} (id {stored}) was renamed from {name!r} to "
                f"{current.name!r}: rename it back, or run 'colibri provision {tenant} --rebind'"
            )
        return stored
    if not named:
        raise SecretsError(f"collection {name!r} not found in organization {organization_id}")
    return named[0].id


def as_refusal(exc: ColibriError) -> ColibriError:
    """Every provisioning refusal is a SecretsError (exit 12), its cause in the message: an
    unsafe path or .env (PermissionDenied), loose credentials, bw missing or timed out.  A store
    error stays itself (the database failed, not the secrets), so does a remote host's (the .env
    there is kept; the link failed, exit 13) and a host not enrolled (4), and so does a bug's
    stand-in."""
    if isinstance(exc, SecretsError | StoreError | RemoteError | NotFound) or type(exc) is ColibriError:
        return exc
    refusal = SecretsError(str(exc))
    refusal.__cause__ = exc
    return refusal


def entries_of(
    items: Sequence[VaultItem], collection_id: str, problems: list[str] | None = None
) -> list[envfile.Entry]:
    """Custom fields and note lines of the collection's items, in a stable order (a note line
    that is not KEY=VALUE goes to ``problems`` when given, else it is raised)."""
    entries: list[envfile.Entry] = []
    chosen = sorted((i for i in items if collection_id in i.collection_ids), key=lambda i: (i.name, i.id))
    for item in chosen:
        label = f"item {item.name!r} ({item.id})"
        entries += [
            envfile.Entry(name, value, f"{label} custom field {number}")
            for number, (name, value) in enumerate(item.fields, start=1)
        ]
        if item.notes:
            entries += envfile.parse_lines(item.notes, f"{label} notes", problems)
    return entries
