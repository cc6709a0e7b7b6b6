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

Three modules: this one is the orchestrator's batch (``SecretsService``: one vault session for
every tenant asked, each tenant's result or refusal; it holds the vault and the operator's
credentials, so it runs only on the orchestrator); colibri/services/secrets_render.py renders a
tenant's text from the vault's snapshot or its staged file; colibri/services/secrets_write.py
(``EnvWriter``) writes a rendered text into a jail of this host and records it (it needs neither
the vault nor the credentials, so a remote host's ``write_env`` and ``spawn`` ops use it for the
text the orchestrator sent).  A tenant on another host is written through ``send_env`` (its
host's op over SSH): only the rendered text travels.  What is reported is
colibri/services/secrets_report.py.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from colibri.adapters.bitwarden_output import Selector, VaultCollection, VaultSnapshot
from colibri.adapters.credentials import OperatorCredentials
from colibri.domain import TenantStatus
from colibri.errors import ColibriError, SecretsError, TenantNotFound
from colibri.services.secrets_render import Plan, Rendered, as_refusal, plan_of, render_env, resolve_collection
from colibri.services.secrets_report import ProvisionResult, interrupted
from colibri.services.secrets_write import EnvTarget, EnvWriter, SendEnv
from colibri.store.audit_hooks import record
from colibri.store.db import Store
from colibri.store.models import Tenant
from colibri.store.repos import TenantRepo


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
        check_placed: Callable[[str, str], None] | None = None,
        writer: EnvWriter | None = None,
        digest: Callable[[bytes], str] | None = None,
    ) -> None:
        self._store = store
        self._config = config
        self._vault = vault
        self._credentials = credentials
        roots = config.allowed_roots
        self._writer = writer or EnvWriter(store, config.jail_user, roots, secrets_changed, digest=digest)
        self._send_env = send_env  # None: a tenant of another host is not written from here
        # Raises unless the orchestrator's own record places the tenant on that host (review R1):
        # the shared row a plan is made of can be written by any host of the hive.
        self._check_placed = check_placed

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
                answers[plan.tenant_id] = render_env(plan, snapshot, resolved, vault_error, self._config.staged_dir)
            except ColibriError as exc:
                refusal = as_refusal(exc)
                self._mark(plan.tenant_id, "stale", str(refusal))
                answers[plan.tenant_id] = refusal
        return {tenant_id: answers[tenant_id] for tenant_id in dict.fromkeys(tenant_ids)}

    # --- planning ------------------------------------------------------------------------------

    def _plan(self, tenant: Tenant) -> Plan:
        if tenant.parent is None:
            return plan_of(tenant, self._config.staged_dir)
        from colibri.store.children import ChildRepo

        with self._store.session() as session:  # a child's secrets are its lineage root's (issue 14)
            root = ChildRepo(session).root_of(tenant.tenant_id)
        return plan_of(tenant, self._config.staged_dir, staged_for=root)

    def _run(self, plans: Sequence[Plan], *, rebind: bool, batch: bool) -> list[ProvisionResult]:
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
        self, plans: Sequence[Plan], rebind: bool, *, need_target: bool
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
        plan: Plan,
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

    def _has_target(self, plan: Plan) -> bool:
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
        plan: Plan,
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
        if self._check_placed is not None:
            self._check_placed(plan.tenant_id, plan.host)
        rendered = render_env(plan, snapshot, resolved, vault_error, self._config.staged_dir)
        assert rendered.content is not None and rendered.source is not None
        if plan.host == self._config.host:
            target = EnvTarget(plan.tenant_id, plan.backend, plan.jail_root, plan.uid_base)
            path, changed = self._writer.deliver(target, rendered.content, rendered.collection_id)
            where = str(path)
        else:
            assert self._send_env is not None
            where, changed = self._send_env(plan.host, plan.tenant_id, rendered.content, rendered.collection_id)
            with self._store.session() as session:  # what was sent and what came back, in this host's log
                digest = self._writer.digest(rendered.content)
                record(session, "secrets.send", f"tenant:{plan.tenant_id}", tenant=plan.tenant_id, to_host=plan.host,
                       keys=list(rendered.keys), digest=digest, changed=changed)  # fmt: skip
        source = rendered.source
        return ProvisionResult(
            plan.tenant_id,
            "written" if changed else "unchanged",
            source,
            where,
            rendered.keys,
            f"{len(rendered.keys)} keys from {source}" + ("" if changed else " (no change)"),
        )

    def _no_target_reason(self, plan: Plan) -> str:
        if plan.host != self._config.host:
            return f"tenant {plan.tenant_id} runs on host {plan.host}, not on {self._config.host}"
        return f"tenant {plan.tenant_id} has no jail yet: spawn it first"

    def _mark(self, tenant_id: str, status: str, error: str | None) -> None:
        self._writer.mark(tenant_id, status, error)
