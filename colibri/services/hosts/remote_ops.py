"""The lifecycle ops a host serves to the orchestrator (``colibri remote serve`` dispatches to them).

Each op is a plain function ``op(args) -> dict`` over JSON values: what crosses the SSH channel
is only what JSON carries.  Every op is hostile input first: its arguments are checked (known
keys only, types, sizes, tenant ids by the tenant rule), and the tenant must live on the serving
host (``tenants.host`` == its ``settings.host``): a host never acts on another host's tenant.
Answers are the same typed views the local services return (``TenantView``, ``DriftView``...).

``spawn_many`` is a host's share of one ``spawn-agent`` call in one request: this host's own
``spawn_many`` runs it (one process, at most ``spawn_parallelism`` at once), each step streamed
back as a progress frame as it happens (``serve.progress_sink``).

Secrets: ``spawn``, ``spawn_many`` and ``write_env`` carry the tenant's rendered ``.env`` text, rendered on the
orchestrator (the vault and the operator's credentials never come here); it is written with the
same envfile rules as a local one (no-follow, 0600, owned by the jail's user, atomic, the old file
kept on any error) and never logged, stored or echoed in an answer or an error.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from colibri.domain import validate_tenant_id
from colibri.errors import ColibriError, InvalidInput, StateConflict, TenantNotFound

if TYPE_CHECKING:
    from colibri.adapters.jail import JailBackend
    from colibri.services.lifecycle.operations import AgentService
    from colibri.services.lifecycle.pipeline import Provisioned, SpawnService
    from colibri.services.lifecycle.reconcile import Reconciler
    from colibri.services.secrets_report import ProvisionResult
    from colibri.services.secrets_write import EnvWriter
    from colibri.store.db import Store

Op = Callable[[Mapping[str, Any]], dict[str, Any]]

MAX_ENV_BYTES = 64 * 1024
"""A rendered .env sent to a host: at most this many bytes (UTF-8); more is refused before a
byte is written (the orchestrator checks it before sending, too)."""
MAX_TEXT = 1024
MAX_LIST = 256
MAX_BATCH = 64
"""The most tenants one ``spawn_many`` request carries (the orchestrator splits a larger share)."""


@dataclass(frozen=True)
class ServingHost:
    """What the ops need from the host serving them, built by its composition root (cli/context)."""

    host: str
    """This host's name (``settings.host``): the only host whose tenants the ops act on."""
    store: "Store"
    backend: "Callable[[], JailBackend]"
    agents: "Callable[[], AgentService]"
    spawner: "Callable[[Callable[[str], Provisioned]], SpawnService]"
    """A spawn pipeline whose provisioning step is the given callback."""
    reconciler: "Callable[[], Reconciler]"
    """A reconciler of this host's tenants only."""
    env_writer: "Callable[[], EnvWriter]"
    spawn_parallelism: int = 4
    """This host's own bound on spawns at once (its ``spawn_parallelism``): a batch never runs more."""


def lifecycle_ops(serving: ServingHost) -> dict[str, Op]:
    """The op table: op name → handler.  Wired into ``remote serve``'s registry next to
    ``ping`` and ``version``."""
    ops = _Ops(serving)
    return {
        "spawn": ops.spawn,
        "spawn_many": ops.spawn_many,
        "start": ops.start,
        "stop": ops.stop,
        "destroy": ops.destroy,
        "release": ops.release,
        "reconcile": ops.reconcile,
        "write_env": ops.write_env,
        "show": ops.show,
        "destroy_stale": ops.destroy_stale,
    }


class _Ops:
    def __init__(self, serving: ServingHost) -> None:
        self._serving = serving

    # ---- the ops -------------------------------------------------------------------------------
    def spawn(self, args: Mapping[str, Any]) -> dict[str, Any]:
        """Run (or resume) the tenant's spawn pipeline here; its provisioning step writes the
        text sent (``env`` None: the tenant has no secrets).  The answer carries the steps as the
        local pipeline reported them, and the error (type, code, message) when it failed."""
        _only(
            args,
            "tenant",
            "env",
            "source",
            "keys",
            "collection_id",
            "template",
            "capabilities",
            "jail_name",
            "jail_root",
            "skills",
        )
        tenant = self._ours(args)
        env = _env(args.get("env"), allow_none=True)
        source = _text(args, "source")
        keys = _texts(args, "keys") or []
        collection_id = _text(args, "collection_id")
        template = _text(args, "template")
        capabilities = _texts(args, "capabilities")
        skills = _texts(args, "skills")  # names and versions only: resolved here, with this host's pinned root
        jail_name, jail_root = _text(args, "jail_name"), _text(args, "jail_root")
        if (jail_name is None) != (jail_root is None):
            raise InvalidInput("jail_name and jail_root go together")
        from pathlib import Path

        adopt = (jail_name, Path(jail_root)) if jail_name is not None and jail_root is not None else None
        steps: list[list[str]] = []

        def on_step(tenant_id: str, step: str, state: str, detail: str) -> None:
            if len(steps) < 4 * MAX_LIST:
                steps.append([tenant_id, step, state, detail])

        def provision(tenant_id: str) -> "Provisioned":
            return self._provide(tenant_id, env, source, tuple(keys), collection_id)

        try:
            record = self._serving.spawner(provision).spawn(
                tenant, template=template, capabilities=capabilities, adopt=adopt, on_step=on_step, skills=skills
            )
        except ColibriError as exc:
            return {"steps": steps, "error": _envelope(exc)}
        return {"tenant": dict(record), "steps": steps}

    def spawn_many(self, args: Mapping[str, Any]) -> dict[str, Any]:
        """Run (or resume) several tenants' pipelines here, at most ``parallelism`` at once and
        never more than this host's own ``spawn_parallelism``; each tenant's provisioning writes
        the text sent for it.  Every step goes back as a progress frame as it happens; the answer
        is each tenant's error envelope, or null when it is active.  A malformed batch is refused
        whole, before anything runs; a tenant that is not this host's fails alone."""
        from colibri.services.hosts.serve import progress_sink

        _only(args, "tenants", "template", "capabilities", "parallelism", "skills")
        items, parallelism = args.get("tenants"), args.get("parallelism", 1)
        if not isinstance(items, list) or not 1 <= len(items) <= MAX_BATCH:
            raise InvalidInput(f"tenants must be a list of 1 to {MAX_BATCH} tenants")
        if not isinstance(parallelism, int) or isinstance(parallelism, bool) or not 1 <= parallelism <= 64:
            raise InvalidInput("parallelism must be a whole number from 1 to 64")
        template, capabilities, skills = _text(args, "template"), _texts(args, "capabilities"), _texts(args, "skills")
        batch: dict[str, tuple[bytes | None, str | None, tuple[str, ...], str | None]] = {}
        refused: dict[str, ColibriError] = {}
        for item in items:
            if not isinstance(item, Mapping):
                raise InvalidInput("each of tenants must be an object")
            _only(item, "tenant", "env", "source", "keys", "collection_id")
            raw = item.get("tenant")
            tenant = validate_tenant_id(raw) if isinstance(raw, str) else ""
            if not tenant or tenant in batch or tenant in refused:
                raise InvalidInput("each of tenants needs a tenant id of its own")
            sent = (_env(item.get("env"), allow_none=True), _text(item, "source"), _texts(item, "keys"))
            collection_id = _text(item, "collection_id")
            try:
                batch[self._ours(item)] = (sent[0], sent[1], tuple(sent[2] or []), collection_id)
            except (TenantNotFound, StateConflict) as exc:
                refused[tenant] = exc
        sink = progress_sink()

        def on_step(tenant_id: str, step: str, state: str, detail: str) -> None:
            sink({"tenant": tenant_id, "step": step[:MAX_TEXT], "state": state[:MAX_TEXT], "detail": detail[:MAX_TEXT]})

        def provision(tenant_id: str) -> "Provisioned":
            env, source, keys, collection_id = batch[tenant_id]
            return self._provide(tenant_id, env, source, keys, collection_id)

        at_once = min(parallelism, self._serving.spawn_parallelism)
        errors: dict[str, ColibriError | None] = dict(refused)
        if batch:
            spawner = self._serving.spawner(provision)
            options = {"template": template, "capabilities": capabilities, "skills": skills}
            errors |= spawner.spawn_many(list(batch), at_once, on_step, **options)
        return {"results": {t: None if e is None else _envelope(e) for t, e in errors.items()}}

    def start(self, args: Mapping[str, Any]) -> dict[str, Any]:
        _only(args, "tenant")
        return {"tenant": dict(self._serving.agents().start(self._ours(args)))}

    def stop(self, args: Mapping[str, Any]) -> dict[str, Any]:
        _only(args, "tenant")
        return {"tenant": dict(self._serving.agents().stop(self._ours(args)))}

    def destroy(self, args: Mapping[str, Any]) -> dict[str, Any]:
        """Destroy the tenant's jail here (never an adopted one); its .env goes with the jail."""
        _only(args, "tenant")
        return {"tenant": dict(self._serving.agents().destroy(self._ours(args)))}

    def release(self, args: Mapping[str, Any]) -> dict[str, Any]:
        _only(args, "tenant")
        return {"tenant": dict(self._serving.agents().release(self._ours(args)))}

    def reconcile(self, args: Mapping[str, Any]) -> dict[str, Any]:
        """This host's tenants against this host's jails; ``apply`` makes the safe repairs."""
        _only(args, "apply")
        apply = args.get("apply", False)
        if not isinstance(apply, bool):
            raise InvalidInput("apply must be true or false")
        from colibri.services.lifecycle.reconcile import describe_drifts

        drifts = self._serving.reconciler().reconcile(apply=apply)
        return {"drifts": [dict(d) for d in describe_drifts(drifts)]}

    def write_env(self, args: Mapping[str, Any]) -> dict[str, Any]:
        """Write the rendered text into the tenant's jail here: (path, changed)."""
        _only(args, "tenant", "env", "collection_id")
        tenant = self._ours(args)
        env = _env(args.get("env"), allow_none=False)
        assert env is not None
        writer = self._serving.env_writer()
        try:
            path, changed = writer.deliver(writer.target(tenant), env, _text(args, "collection_id"))
        except ColibriError as exc:
            self._stale(writer, tenant, exc)
            raise _refusal(exc) from None
        return {"path": str(path), "changed": changed}

    def show(self, args: Mapping[str, Any]) -> dict[str, Any]:
        """The tenant as the store has it, and its jail as this host's backend sees it."""
        _only(args, "tenant")
        tenant = self._ours(args)
        from colibri.services.tenants import TenantService

        record = TenantService(self._serving.store, self._serving.host).show(tenant)
        info = self._serving.backend().info(record["jail_name"])
        jail = {"state": str(info.state), "managed": info.managed, "root": str(info.root)}
        return {"tenant": dict(record), "jail": jail}

    def destroy_stale(self, args: Mapping[str, Any]) -> dict[str, Any]:
        """Destroy the jail (its .env with it) a tenant that no longer lives here left behind: it
        was moved away while this host was lost (``move-tenant --old-host-lost``, review R15).
        Refused while the store places the tenant here, and for a jail colibri did not make."""
        _only(args, "tenant")
        raw = args.get("tenant")
        if not isinstance(raw, str):
            raise InvalidInput("tenant must be a tenant id")
        tenant = validate_tenant_id(raw)
        from colibri.adapters.jail import JailState
        from colibri.errors import JailError
        from colibri.services.lifecycle.layout import agent_lock
        from colibri.store.repos import TenantRepo

        with self._serving.store.session() as session:
            row = TenantRepo(session).get(tenant)
            if row is not None and row.status != "removed" and row.host == self._serving.host:
                raise StateConflict(
                    f"host {self._serving.host} refuses: tenant {tenant} lives here, its jail is not stale"
                )
        agents = self._serving.agents()
        with agent_lock(agents.locks_dir, tenant):
            backend = self._serving.backend()
            info = backend.info(tenant)
            if info.state is JailState.ABSENT:
                return {"destroyed": False}
            if not info.managed:
                raise JailError(f"jail {tenant} was not created by colibri; refusing to destroy it")
            backend.destroy(tenant)
        return {"destroyed": True}

    # ---- helpers -------------------------------------------------------------------------------
    def _ours(self, args: Mapping[str, Any]) -> str:
        """The ``tenant`` argument, checked, of a tenant that lives on this host."""
        raw = args.get("tenant")
        if not isinstance(raw, str):
            raise InvalidInput("tenant must be a tenant id")
        tenant = validate_tenant_id(raw)
        from colibri.store.repos import TenantRepo

        with self._serving.store.session() as session:
            row = TenantRepo(session).get(tenant)
            if row is None or row.status == "removed":
                raise TenantNotFound(tenant)
            if row.host != self._serving.host:
                raise StateConflict(
                    f"host {self._serving.host} refuses: tenant {tenant} lives on host {row.host}, not here"
                )
        return tenant

    def _provide(
        self,
        tenant_id: str,
        env: bytes | None,
        source: str | None,
        keys: tuple[str, ...],
        collection_id: str | None,
    ) -> "ProvisionResult":
        """The spawn pipeline's provisioning step on this host: write what the orchestrator sent."""
        from colibri.services.secrets_report import ProvisionResult

        writer = self._serving.env_writer()
        if env is None:
            writer.mark(tenant_id, "none", None)
            return ProvisionResult(
                tenant_id, "skipped", message="tenant has no collection: nothing to do", secrets_expected=False
            )
        try:
            path, changed = writer.deliver(writer.target(tenant_id), env, collection_id)
        except ColibriError as exc:
            self._stale(writer, tenant_id, exc)
            raise _refusal(exc) from None
        shown = source or "the orchestrator"
        return ProvisionResult(
            tenant_id,
            "written" if changed else "unchanged",
            shown,
            str(path),
            keys,
            f"{len(keys)} keys from {shown}" + ("" if changed else " (no change)"),
        )

    @staticmethod
    def _stale(writer: "EnvWriter", tenant_id: str, exc: ColibriError) -> None:
        writer.mark(tenant_id, "stale", str(_refusal(exc)))


def _refusal(exc: ColibriError) -> ColibriError:
    from colibri.services.secrets_render import as_refusal

    return as_refusal(exc)


def _envelope(exc: ColibriError) -> dict[str, Any]:
    return {"type": type(exc).__name__, "code": exc.exit_code, "message": exc.message[:2000]}


def _only(args: Mapping[str, Any], *known: str) -> None:
    if not isinstance(args, Mapping):
        raise InvalidInput("the op's arguments must be an object")
    unknown = sorted(str(k)[:40] for k in args if k not in known)
    if unknown:
        raise InvalidInput(f"unknown argument(s): {', '.join(unknown[:5])}")


def _text(args: Mapping[str, Any], key: str) -> str | None:
    value = args.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_TEXT or not value.isprintable():
        raise InvalidInput(f"{key} must be printable text of at most {MAX_TEXT} characters")
    return value


def _texts(args: Mapping[str, Any], key: str) -> list[str] | None:
    value = args.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or len(value) > MAX_LIST:
        raise InvalidInput(f"{key} must be a list of at most {MAX_LIST} items")
    for item in value:
        if not isinstance(item, str) or len(item) > MAX_TEXT or not item.isprintable():
            raise InvalidInput(f"{key} must hold printable text of at most {MAX_TEXT} characters")
    return list(value)


def _env(value: object, *, allow_none: bool) -> bytes | None:
    """The rendered .env text as bytes (its value is never part of a message)."""
    if value is None and allow_none:
        return None
    if not isinstance(value, str):
        raise InvalidInput("env must be the rendered .env text")
    try:
        content = value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput("env is not UTF-8 text") from None
    if len(content) > MAX_ENV_BYTES:
        raise InvalidInput(f"env is more than {MAX_ENV_BYTES} bytes")
    if b"\0" in content:
        raise InvalidInput("env holds a NUL byte")
    return content
