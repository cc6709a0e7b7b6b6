"""Placement: where a tenant lives, and the service that acts on it there.

Every lifecycle command goes to the tenant's host (``tenants.host``): this host's tenants to
the local services as before, another host's to that host's lifecycle ops over its link (SSH,
colibri/adapters/ssh.py; one kept connection per host).  ``Lifecycle`` is what the CLI calls:

    spawn-agent, start-agent, stop-agent, destroy-agent, release-agent   → the tenant's host
    reconcile [--apply]                                                  → this host + each enrolled host
    provision (one, --all)                                               → rendered here, written there

Secrets never leave in any other form: the vault and the operator's credentials stay on this
host (the orchestrator); a remote tenant's ``.env`` is resolved and rendered here
(services/secrets.py) and only that text is sent, inside the op's arguments (the channel's
stdin), to be written there by the same envfile rules.

Everything a remote host answers is a peer's input: its step reports and drifts are checked
and bounded before they are shown, and the tenant a command prints is read from the store, not
taken from the answer.
"""

import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from colibri.errors import ColibriError, HostIncompatible, NotFound, RemoteError, SecretsError, error_from_api
from colibri.services.hosts.remote_ops import MAX_ENV_BYTES
from colibri.services.lifecycle.reconcile import Drift, DriftView
from colibri.store.db import Store
from colibri.text import safe

if TYPE_CHECKING:
    from colibri.services.lifecycle.operations import AgentService, ReleasedView
    from colibri.services.lifecycle.pipeline import SpawnService, StepCallback
    from colibri.services.lifecycle.reconcile import Reconciler
    from colibri.services.secrets import Rendered, SecretsService
    from colibri.store.models import TenantView

T = TypeVar("T")

SPAWN_TIMEOUT = 1800.0
"""A remote spawn (a jail created from a template, its packages, the mother ready): seconds."""
LONG_TIMEOUT = 600.0
"""A remote start, stop, destroy, release or reconcile: seconds (the link's own default for the rest)."""
MAX_STEPS = 1024
MAX_DRIFTS = 100_000
MAX_FIELD = 2000


@dataclass(frozen=True)
class HostReach:
    """How the orchestrator reaches a host, as enrolled (``colibri hosts add``): the fields of
    adapters/ssh.py's SshTarget."""

    name: str
    user: str
    address: str
    port: int
    host_keys: tuple[str, ...]
    command: str | None


class HostLink(Protocol):
    """One host's kept channel (adapters/ssh.py HostLink): an op and its JSON arguments in, its
    JSON answer out; an error answer is raised as the ColibriError it names."""

    def call(self, op: str, args: Mapping[str, Any], timeout: float | None = None) -> dict[str, Any]: ...


LinkFactory = Callable[[HostReach], HostLink]


class HostDriftView(DriftView):
    """A drift as ``reconcile --json`` shows it with many hosts: the host first."""

    host: str


@dataclass(frozen=True)
class HostDrift:
    host: str
    drift: Drift
    failure: ColibriError | None = None  # an unreachable host: the link's error

    def public(self) -> HostDriftView:
        view = self.drift.public()
        return HostDriftView(host=self.host, **view)


UNREACHABLE = "unreachable_host"
"""The drift kind of a host reconcile could not ask: one failed item, its error the link's."""


class Placement:
    """Which host a tenant lives on, and the link to a host (made once per command, lazily: a
    colibri with one host never builds one, nor imports paramiko)."""

    def __init__(self, store: Store, this_host: str, links: LinkFactory | None) -> None:
        self._store = store
        self.this_host = this_host
        self._links = links
        self._made: dict[str, HostLink] = {}
        self._lock = threading.Lock()

    def host_of(self, tenant_id: str) -> str:
        """The host the tenant lives on.  TenantNotFound."""
        return self.where(tenant_id)[0]

    def where(self, tenant_id: str) -> tuple[str, str]:
        """The tenant's host and status.  TenantNotFound."""
        from colibri.errors import TenantNotFound
        from colibri.store.repos import TenantRepo

        with self._store.session() as session:
            tenant = TenantRepo(session).get(tenant_id)
            if tenant is None or tenant.status == "removed":
                raise TenantNotFound(tenant_id)
            return tenant.host, tenant.status

    def is_local(self, host: str) -> bool:
        return host == self.this_host

    def remote_hosts(self) -> list[str]:
        """The enrolled hosts other than this one, by name."""
        from colibri.store.hosts import HostRepo

        with self._store.session() as session:
            return [h.name for h in HostRepo(session).find() if h.name != self.this_host]

    def rehome(self, tenant_id: str, host: str, *, forget_jail: bool = False) -> None:
        """Record that the tenant now lives on ``host``: only while it has no jail anywhere, or
        with ``forget_jail`` (its old host is lost for good) its jail there forgotten."""
        from colibri.domain import TenantStatus
        from colibri.errors import StateConflict, TenantNotFound
        from colibri.store.repos import TenantRepo

        with self._store.session() as session:
            repo = TenantRepo(session)
            tenant = repo.get_for_update(tenant_id)
            if tenant is None or tenant.status == TenantStatus.REMOVED:
                raise TenantNotFound(tenant_id)
            if forget_jail and tenant.adopted:
                raise StateConflict(f"tenant {tenant_id} has an adopted jail on host {tenant.host}: not forgotten")
            if forget_jail and tenant.status != TenantStatus.REGISTERED:
                if tenant.status == TenantStatus.SPAWNING:
                    repo.change(tenant_id, TenantStatus.FAILED)
                cleared = dict.fromkeys(("backend", "jail_root", "ip_address", "spawn_step"))
                forgotten = f"its jail on lost host {tenant.host} was forgotten (move-tenant --old-host-lost)"
                repo.change(tenant_id, TenantStatus.REGISTERED, last_error=forgotten, **cleared)
            elif tenant.status != TenantStatus.REGISTERED or tenant.jail_root:
                raise StateConflict(
                    f"tenant {tenant_id} is {tenant.status} on host {tenant.host}: destroy it there first"
                )
            repo.change(tenant_id, host=host)

    def remote(self, host: str) -> "RemoteHost":
        return RemoteHost(host, self.link(host), self._store, self.this_host)

    def link(self, host: str) -> HostLink:
        """The host's link.  NotFound (not enrolled), RemoteError (no SSH reach enrolled, or
        this host cannot drive others)."""
        with self._lock:
            made = self._made.get(host)
            if made is not None:
                return made
            reach = self._reach(host)
            if self._links is None:
                raise RemoteError(f"tenant's host {host} is another host, and this colibri has no SSH link to it")
            made = self._links(reach)
            # Before anything goes over it (a tenant's .env, say), the colibri there must call itself
            # by the name the host was enrolled under: hosts enrolled crosswise get nothing (review R16).
            calls_itself = made.call("version", {}).get("host")
            if calls_itself != host:
                raise HostIncompatible(
                    f"host {host}: the colibri there calls itself {safe(str(calls_itself)[:64])!r}; nothing was sent"
                )
            self._made[host] = made
            return made

    def _reach(self, host: str) -> HostReach:
        from colibri.store.hosts import HostRepo

        with self._store.session() as session:
            row = HostRepo(session).get(host)
            if row is None:
                raise NotFound(
                    f"host not found: {host} (not enrolled here; enrol it first: "
                    f"colibri hosts add {host} --ssh USER@ADDRESS --host-key KEY)"
                )
            if not row.address or not row.ssh_user or not row.host_keys:
                raise RemoteError(
                    f"host {host} has no SSH address, user or pinned host key enrolled: "
                    f"colibri hosts remove {host}, then colibri hosts add {host} --ssh USER@ADDRESS --host-key KEY"
                )
            keys = tuple(line for line in row.host_keys.splitlines() if line.strip())
            return HostReach(row.name, row.ssh_user, row.address, row.port or 22, keys, row.command)


class RemoteHost:
    """A host's lifecycle ops (services/hosts/remote_ops.py) over its link, answering as the
    local services do."""

    def __init__(self, name: str, link: HostLink, store: Store, this_host: str) -> None:
        self.name = name
        self._link = link
        self._store = store
        self._this_host = this_host

    def spawn(
        self,
        tenant_id: str,
        rendered: "Rendered",
        *,
        template: str | None = None,
        capabilities: list[str] | None = None,
        adopt: tuple[str, Path] | None = None,
        on_step: "StepCallback | None" = None,
    ) -> "TenantView":
        """The tenant's pipeline on its host, its provisioning writing ``rendered``.  Raises the
        error the pipeline failed with there (after replaying its steps), or the link's."""
        args: dict[str, Any] = {
            "tenant": tenant_id,
            "env": env_text(rendered),
            "source": rendered.source,
            "keys": list(rendered.keys),
            "collection_id": rendered.collection_id,
            "template": template,
            "capabilities": capabilities,
            "jail_name": adopt[0] if adopt else None,
            "jail_root": str(adopt[1]) if adopt else None,
        }
        answer = self._link.call("spawn", args, timeout=SPAWN_TIMEOUT)
        del args
        steps = answer.get("steps")
        if on_step is not None and isinstance(steps, list):
            for step in steps[:MAX_STEPS]:
                if isinstance(step, list) and len(step) == 4 and all(isinstance(s, str) for s in step):
                    on_step(tenant_id, _cut(step[1]), _cut(step[2]), _cut(step[3]))
        error = answer.get("error")
        if isinstance(error, Mapping):
            raise error_from_api(error.get("type"), error.get("code"), _cut(str(error.get("message", ""))))
        return self._tenant(tenant_id)

    def start(self, tenant_id: str) -> "TenantView":
        self._link.call("start", {"tenant": tenant_id}, timeout=LONG_TIMEOUT)
        return self._tenant(tenant_id)

    def stop(self, tenant_id: str) -> "TenantView":
        self._link.call("stop", {"tenant": tenant_id}, timeout=LONG_TIMEOUT)
        return self._tenant(tenant_id)

    def destroy(self, tenant_id: str) -> "TenantView":
        self._link.call("destroy", {"tenant": tenant_id}, timeout=LONG_TIMEOUT)
        return self._tenant(tenant_id)

    def release(self, tenant_id: str) -> "ReleasedView":
        from colibri.services.lifecycle.operations import ReleasedView

        answer = self._link.call("release", {"tenant": tenant_id}, timeout=LONG_TIMEOUT)
        shown = answer.get("tenant")
        raw = shown.get("removed") if isinstance(shown, Mapping) else None
        removed = [_cut(r) for r in raw[:MAX_STEPS] if isinstance(r, str)] if isinstance(raw, list) else []
        return ReleasedView(**self._tenant(tenant_id), removed=removed)

    def reconcile(self, apply: bool) -> list[Drift]:
        answer = self._link.call("reconcile", {"apply": apply}, timeout=LONG_TIMEOUT)
        raw = answer.get("drifts")
        if not isinstance(raw, list):
            raise RemoteError(f"host {self.name} answered reconcile without its drifts")
        return [_drift(item, self.name) for item in raw[:MAX_DRIFTS]]

    def write_env(self, tenant_id: str, content: bytes, collection_id: str | None) -> tuple[str, bool]:
        """Write a rendered .env in the tenant's jail there: (its path there, changed)."""
        args = {"tenant": tenant_id, "env": _decoded(content, tenant_id), "collection_id": collection_id}
        answer = self._link.call("write_env", args)
        del args
        path, changed = answer.get("path"), answer.get("changed")
        if not isinstance(path, str) or not isinstance(changed, bool):
            raise RemoteError(f"host {self.name} answered write_env without its path and change")
        return f"{self.name}:{_cut(path)}", changed

    def show(self, tenant_id: str) -> dict[str, Any]:
        answer = self._link.call("show", {"tenant": tenant_id})
        jail = answer.get("jail")
        if not isinstance(jail, Mapping):
            raise RemoteError(f"host {self.name} answered show without the jail")
        return {k: _cut(str(jail.get(k))) for k in ("state", "managed", "root")}

    def _tenant(self, tenant_id: str) -> "TenantView":
        from colibri.services.tenants import TenantService

        return TenantService(self._store, self._this_host).show(tenant_id)


def env_text(rendered: "Rendered") -> str | None:
    """The rendered .env as the text an op carries (None: no secrets); over the bound it is
    refused here, before anything is sent."""
    return None if rendered.content is None else _decoded(rendered.content, rendered.tenant_id)


def _decoded(content: bytes, tenant_id: str) -> str:
    if len(content) > MAX_ENV_BYTES:
        raise SecretsError(
            f"the .env of tenant {tenant_id} is {len(content)} bytes; at most {MAX_ENV_BYTES} are sent to another host"
        )
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError:
        raise SecretsError(f"the .env of tenant {tenant_id} is not UTF-8 text; not sent") from None


def _cut(text: str) -> str:
    return text[:MAX_FIELD]


def _drift(item: object, host: str) -> Drift:
    """A peer's drift, checked: its fields' types and sizes."""
    if not isinstance(item, Mapping):
        raise RemoteError(f"host {host} answered a drift that is not an object")
    kind, jail, tenant, action = item.get("kind"), item.get("jail"), item.get("tenant"), item.get("action")
    applied, error = item.get("applied"), item.get("error")
    texts_ok = all(isinstance(v, str) for v in (kind, jail, action)) and isinstance(applied, bool)
    if not texts_ok or not (tenant is None or isinstance(tenant, str)) or not (error is None or isinstance(error, str)):
        raise RemoteError(f"host {host} answered a drift with fields of the wrong type")
    assert isinstance(kind, str) and isinstance(jail, str) and isinstance(action, str) and isinstance(applied, bool)
    return Drift(
        _cut(kind),
        _cut(jail),
        None if tenant is None else _cut(tenant),
        _cut(action),
        applied,
        None if error is None else _cut(error),
    )


class Lifecycle:
    """The lifecycle commands, each sent to the tenant's host."""

    def __init__(
        self,
        placement: Placement,
        *,
        agents: "Callable[[], AgentService]",
        spawner: "Callable[[], SpawnService]",
        reconciler: "Callable[[], Reconciler]",
        secrets: "Callable[[], SecretsService]",
    ) -> None:
        self._placement = placement
        self._agents = agents
        self._spawner = spawner
        self._reconciler = reconciler
        self._secrets = secrets
        self._down: dict[str, ColibriError] = {}  # a host whose link failed in this command
        self._lock = threading.Lock()
        self._local: SpawnService | None = None

    def _local_spawner(self) -> "SpawnService":
        """This host's spawn pipeline, one for the command (spawn_many's threads share it)."""
        with self._lock:
            if self._local is None:
                self._local = self._spawner()
            return self._local

    @property
    def placement(self) -> Placement:
        return self._placement

    # ---- one tenant ----------------------------------------------------------------------------
    def start(self, tenant_id: str) -> "TenantView":
        host = self._placement.host_of(tenant_id)
        if self._placement.is_local(host):
            return self._agents().start(tenant_id)
        return self._on(host, lambda remote: remote.start(tenant_id))

    def stop(self, tenant_id: str) -> "TenantView":
        host = self._placement.host_of(tenant_id)
        if self._placement.is_local(host):
            return self._agents().stop(tenant_id)
        return self._on(host, lambda remote: remote.stop(tenant_id))

    def destroy(self, tenant_id: str) -> "TenantView":
        host = self._placement.host_of(tenant_id)
        if self._placement.is_local(host):
            return self._agents().destroy(tenant_id)
        return self._on(host, lambda remote: remote.destroy(tenant_id))

    def release(self, tenant_id: str) -> "ReleasedView":
        host = self._placement.host_of(tenant_id)
        if self._placement.is_local(host):
            return self._agents().release(tenant_id)
        return self._on(host, lambda remote: remote.release(tenant_id))

    def spawn(
        self,
        tenant_id: str,
        *,
        template: str | None = None,
        capabilities: list[str] | None = None,
        adopt: tuple[str, Path] | None = None,
        on_step: "StepCallback | None" = None,
    ) -> "TenantView":
        """Spawn (or resume) on the tenant's host.  A remote tenant's secrets are rendered here
        first: when that fails nothing is sent and no jail work starts (the tenant is marked
        stale, exit 12); the host then runs the pipeline as a local spawn does, resumable by
        ``spawn_step``."""
        host = self._placement.host_of(tenant_id)
        if self._placement.is_local(host):
            return self._local_spawner().spawn(
                tenant_id, template=template, capabilities=capabilities, adopt=adopt, on_step=on_step
            )
        remote = self._remote(host)
        rendered = self._secrets().render(tenant_id)
        return self._on(
            host,
            lambda r: r.spawn(
                tenant_id, rendered, template=template, capabilities=capabilities, adopt=adopt, on_step=on_step
            ),
            remote,
        )

    def spawn_local(
        self,
        tenant_id: str,
        home: Path,
        *,
        capabilities: list[str] | None = None,
        on_step: "StepCallback | None" = None,
    ) -> "TenantView":
        """spawn-local: the agent as a process of this host, so only for a tenant of this host."""
        from colibri.errors import StateConflict

        host = self._placement.host_of(tenant_id)
        if not self._placement.is_local(host):
            raise StateConflict(
                f"tenant {tenant_id} lives on host {host}; spawn-local runs an agent on this host "
                f"({self._placement.this_host}) only: colibri move-tenant {tenant_id} --to {self._placement.this_host}"
            )
        return self._local_spawner().spawn_local(tenant_id, home, capabilities=capabilities, on_step=on_step)

    def spawn_many(
        self,
        tenant_ids: Sequence[str],
        parallelism: int,
        on_step: "StepCallback | None" = None,
        *,
        template: str | None = None,
        capabilities: list[str] | None = None,
    ) -> dict[str, ColibriError | None]:
        """Spawn several tenants, wherever each lives, at most ``parallelism`` at once per host
        (the hosts side by side).  The remote tenants' secrets are rendered with one vault
        session.  Returns each one's error or None."""
        results: dict[str, ColibriError | None] = {}
        hosts: dict[str, str] = {}
        for tenant_id in dict.fromkeys(tenant_ids):
            try:
                hosts[tenant_id] = self._placement.host_of(tenant_id)
            except ColibriError as exc:
                results[tenant_id] = exc
        remote_ids = [t for t, h in hosts.items() if not self._placement.is_local(h)]
        rendered: dict[str, Rendered | ColibriError] = {}
        if remote_ids:
            try:
                rendered = self._secrets().render_many(remote_ids)
            except ColibriError as exc:
                rendered = dict.fromkeys(remote_ids, exc)
        gates = {h: threading.Semaphore(max(1, parallelism)) for h in set(hosts.values())}

        def one(tenant_id: str) -> None:
            host = hosts[tenant_id]
            with gates[host]:
                try:
                    if self._placement.is_local(host):
                        self._local_spawner().spawn(
                            tenant_id, template=template, capabilities=capabilities, on_step=on_step
                        )
                    else:
                        secret = rendered[tenant_id]
                        if isinstance(secret, ColibriError):
                            raise secret
                        self._on(
                            host,
                            lambda r: r.spawn(
                                tenant_id, secret, template=template, capabilities=capabilities, on_step=on_step
                            ),
                        )
                    results[tenant_id] = None
                except ColibriError as exc:
                    results[tenant_id] = exc

        workers = max(1, parallelism) * max(1, len(gates))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(one, list(hosts)))
        return {t: results[t] for t in dict.fromkeys(tenant_ids)}

    def move(
        self, tenant_id: str, to: str, on_step: "StepCallback | None" = None, *, old_host_lost: bool = False
    ) -> tuple[str, "TenantView"]:
        """Move a tenant to host ``to``: its jail destroyed on the old host (the jail, its .env
        and mounts with it; an adopted jail is refused), ``tenants.host`` changed, then spawned
        on the new host with its secrets provisioned from the vault again (never copied from the
        old host).  Safe to run again after any failure: it goes on from where it stopped.
        ``old_host_lost``: the old host will never answer: its jail is forgotten, not destroyed
        (a reconcile there lists it as an orphan if it ever comes back).  Returns the old host
        and the tenant."""
        from colibri.domain import HAS_JAIL, TenantStatus, validate_host_name

        validate_host_name(to)
        old, status = self._placement.where(tenant_id)
        if not self._placement.is_local(to):
            self._remote(to)  # enrolled, with its SSH reach: checked before anything changes
        if old != to:
            if TenantStatus(status) in HAS_JAIL and not old_host_lost:
                self.destroy(tenant_id)
            self._placement.rehome(tenant_id, to, forget_jail=old_host_lost)
        return old, self.spawn(tenant_id, on_step=on_step)

    # ---- every host ----------------------------------------------------------------------------
    def reconcile(self, apply: bool = False) -> list[HostDrift]:
        """This host's reconcile, then each enrolled host's, merged, each item naming its host;
        a host that cannot be asked is one failed item (``unreachable_host``)."""
        here = self._placement.this_host
        found = [HostDrift(here, d) for d in self._reconciler().reconcile(apply=apply)]
        for host in self._placement.remote_hosts():
            try:
                drifts = self._on(host, lambda remote: remote.reconcile(apply))
            except ColibriError as exc:
                drift = Drift(UNREACHABLE, "", None, "none: reach the host", False, str(exc))
                found.append(HostDrift(host, drift, exc))
                self._down.setdefault(host, exc)
                continue
            found += [HostDrift(host, d) for d in drifts]
        return found

    def host_failures(self) -> dict[str, ColibriError]:
        """The hosts whose link failed in this command, with the error."""
        return dict(self._down)

    def send_env(self, host: str, tenant_id: str, content: bytes, collection_id: str | None) -> tuple[str, bool]:
        """SecretsService's ``send_env``: a rendered .env written by the tenant's host."""
        return self._on(host, lambda remote: remote.write_env(tenant_id, content, collection_id))

    # ---- helpers -------------------------------------------------------------------------------
    def _remote(self, host: str) -> RemoteHost:
        down = self._down.get(host)
        if down is not None:  # a fresh error of the same type and code, naming the first failure
            raise error_from_api(type(down).__name__, down.exit_code, f"not tried: host {host} failed before: {down}")
        return self._placement.remote(host)

    def _on(self, host: str, action: "Callable[[RemoteHost], T]", remote: RemoteHost | None = None) -> T:
        """``action`` on the host's link; a link failure (RemoteError: unreachable, auth, the
        channel lost) marks the host down for the rest of this command, so a batch does not
        wait for it once per tenant."""
        try:
            return action(remote or self._remote(host))
        except RemoteError as exc:
            with self._lock:
                self._down.setdefault(host, exc)
            raise


def reconcile_failure(found: Sequence[HostDrift]) -> ColibriError | None:
    """How ``reconcile`` ends: None when nothing failed; a failed repair alone is RepairFailed
    (18) as before; with an unreachable host, the batch rule: every failed item named, the
    highest of their exit codes."""
    from colibri.errors import PartialFailure
    from colibri.services.lifecycle.reconcile import repair_failure

    repairs = [f.drift for f in found if f.drift.kind != UNREACHABLE]
    hosts = [f for f in found if f.drift.kind == UNREACHABLE]
    repaired = repair_failure(repairs)
    if not hosts:
        return repaired
    codes = [f.failure.exit_code if f.failure else RemoteError.exit_code for f in hosts]
    codes += [repaired.exit_code] if repaired is not None else []
    named = "; ".join(f"host {f.host}: {f.drift.error}" for f in hosts)
    message = f"{len(hosts)} host(s) could not be reconciled: {named}" + (f"; {repaired}" if repaired else "")
    return PartialFailure(message, max(codes))


def describe(found: Sequence[HostDrift]) -> list[HostDriftView]:
    return [f.public() for f in found]
