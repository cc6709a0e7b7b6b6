"""A host's lifecycle ops (services/hosts/remote_ops.py) over its link, answering as the local
services do.

Secrets never leave in any other form: the vault and the operator's credentials stay on this
host (the orchestrator); a remote tenant's ``.env`` is resolved and rendered here
(services/secrets.py) and only that text is sent, inside the op's arguments (the channel's
stdin), to be written there by the same envfile rules.

A host's share of a ``spawn-agent`` of several tenants travels as one ``spawn_many`` request
(split in batches of at most ``MAX_BATCH`` tenants and half a frame): one remote process runs
the lot with the host's own parallelism, its steps streamed back as they happen.  A host whose
colibri does not know the op yet gets one ``spawn`` per tenant, as before.

Everything a remote host answers is a peer's input: its step reports and drifts are checked
and bounded before they are shown, and the tenant a command prints is read from the store, not
taken from the answer.
"""

import contextlib
import math
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from colibri.adapters.remote_wire import MAX_FRAME
from colibri.error_envelope import error_from_api
from colibri.errors import ColibriError, InvalidInput, RemoteError, SecretsError, StoreError
from colibri.services.hosts.remote_ops import MAX_BATCH, MAX_ENV_BYTES
from colibri.services.hosts.serve import NO_OP
from colibri.services.lifecycle.reconcile import Drift
from colibri.store.db import Store

if TYPE_CHECKING:
    from colibri.services.lifecycle.operations import ReleasedView
    from colibri.services.lifecycle.pipeline import StepCallback
    from colibri.services.secrets_render import Rendered
    from colibri.store.models import TenantView

SPAWN_TIMEOUT = 1800.0
"""A remote spawn (a jail created from a template, its packages, the mother ready): seconds."""
LONG_TIMEOUT = 600.0
"""A remote start, stop, destroy, release or reconcile: seconds (the link's own default for the rest)."""
MAX_STEPS = 1024
MAX_DRIFTS = 100_000
MAX_FIELD = 2000


class HostLink(Protocol):
    """One host's kept channel (adapters/ssh.py HostLink): an op and its JSON arguments in, its
    JSON answer out (an op that streams hands its progress to ``on_progress`` first); an error
    answer is raised as the ColibriError it names."""

    def call(
        self,
        op: str,
        args: Mapping[str, Any],
        timeout: float | None = None,
        on_progress: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]: ...


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
        skills: list[str] | None = None,
    ) -> "TenantView":
        """The tenant's pipeline on its host, its provisioning writing ``rendered``; ``skills``
        as names and versions only (the host resolves them with its own pinned root), sent only
        when given (a host that predates them refuses the key).  Raises the
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
        if skills is not None:
            args["skills"] = skills
        answer = self._call("spawn", args, timeout=SPAWN_TIMEOUT)
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

    def spawn_many(
        self,
        batch: Sequence[tuple[str, "Rendered"]],
        parallelism: int,
        *,
        template: str | None = None,
        capabilities: list[str] | None = None,
        on_step: "StepCallback | None" = None,
        skills: list[str] | None = None,
    ) -> dict[str, ColibriError | None]:
        """This host's share of a spawn of several tenants, each with its rendered .env, in as
        few ``spawn_many`` requests as the bounds allow (one for a usual share), each running
        ``parallelism`` at once there.  Returns each tenant's error or None; the link's own
        failure (unreachable, lost, timed out) is raised."""
        results: dict[str, ColibriError | None] = {}
        for part in _batches(batch):
            try:
                results |= self._spawn_batch(part, parallelism, template, capabilities, on_step, skills)
            except InvalidInput as exc:
                if not str(exc).startswith(NO_OP):
                    raise
                rest = batch[len(results) :]
                return results | self._spawn_each(rest, parallelism, template, capabilities, on_step, skills)
        return results

    def _spawn_batch(
        self,
        part: Sequence[tuple[str, "Rendered"]],
        parallelism: int,
        template: str | None,
        capabilities: list[str] | None,
        on_step: "StepCallback | None",
        skills: list[str] | None = None,
    ) -> dict[str, ColibriError | None]:
        ids = [tenant_id for tenant_id, _ in part]
        items = [
            {
                "tenant": tenant_id,
                "env": env_text(rendered),
                "source": rendered.source,
                "keys": list(rendered.keys),
                "collection_id": rendered.collection_id,
            }
            for tenant_id, rendered in part
        ]
        args: dict[str, Any] = {
            "tenants": items,
            "template": template,
            "capabilities": capabilities,
            "parallelism": parallelism,
        }
        if skills is not None:
            args["skills"] = skills
        shown = set(ids)

        def progress(item: dict[str, Any]) -> None:
            """A peer's step report: shown only when it names a tenant of this batch, with text fields."""
            tenant, step, state, detail = (item.get(k) for k in ("tenant", "step", "state", "detail"))
            if on_step is None or not isinstance(tenant, str) or tenant not in shown:
                return
            if isinstance(step, str) and isinstance(state, str) and isinstance(detail, str):
                on_step(tenant, _cut(step), _cut(state), _cut(detail))

        rounds = math.ceil(len(part) / max(1, parallelism))
        answer = self._link.call("spawn_many", args, timeout=SPAWN_TIMEOUT * rounds, on_progress=progress)
        del args, items
        raw = answer.get("results")
        if not isinstance(raw, Mapping):
            raise RemoteError(f"host {self.name} answered spawn_many without its results")
        results: dict[str, ColibriError | None] = {}
        for tenant_id in ids:
            error = raw.get(tenant_id, ...)
            if error is None:
                results[tenant_id] = None
            elif isinstance(error, Mapping):
                message = _cut(str(error.get("message", "")))
                results[tenant_id] = error_from_api(error.get("type"), error.get("code"), message)
            else:
                results[tenant_id] = RemoteError(f"host {self.name} answered spawn_many without tenant {tenant_id}")
        return results

    def _spawn_each(
        self,
        batch: Sequence[tuple[str, "Rendered"]],
        parallelism: int,
        template: str | None,
        capabilities: list[str] | None,
        on_step: "StepCallback | None",
        skills: list[str] | None = None,
    ) -> dict[str, ColibriError | None]:
        """One ``spawn`` per tenant, ``parallelism`` at once: a host whose colibri predates ``spawn_many``."""
        results: dict[str, ColibriError | None] = {}

        def one(item: tuple[str, "Rendered"]) -> None:
            tenant_id, rendered = item
            try:
                self.spawn(
                    tenant_id, rendered, template=template, capabilities=capabilities, on_step=on_step, skills=skills
                )
                results[tenant_id] = None
            except ColibriError as exc:
                results[tenant_id] = exc

        with ThreadPoolExecutor(max_workers=max(1, parallelism)) as pool:
            list(pool.map(one, batch))
        return {tenant_id: results[tenant_id] for tenant_id, _ in batch}

    def start(self, tenant_id: str) -> "TenantView":
        self._call("start", {"tenant": tenant_id}, timeout=LONG_TIMEOUT)
        return self._tenant(tenant_id)

    def stop(self, tenant_id: str) -> "TenantView":
        self._call("stop", {"tenant": tenant_id}, timeout=LONG_TIMEOUT)
        return self._tenant(tenant_id)

    def destroy(self, tenant_id: str) -> "TenantView":
        self._call("destroy", {"tenant": tenant_id}, timeout=LONG_TIMEOUT)
        return self._tenant(tenant_id)

    def release(self, tenant_id: str) -> "ReleasedView":
        from colibri.services.lifecycle.operations import ReleasedView

        answer = self._call("release", {"tenant": tenant_id}, timeout=LONG_TIMEOUT)
        shown = answer.get("tenant")
        raw = shown.get("removed") if isinstance(shown, Mapping) else None
        removed = [_cut(r) for r in raw[:MAX_STEPS] if isinstance(r, str)] if isinstance(raw, list) else []
        return ReleasedView(**self._tenant(tenant_id), removed=removed)

    def destroy_stale(self, tenant_id: str) -> bool:
        """Destroy the jail (and its .env) a tenant that no longer lives there left on this
        host; True when there was one."""
        answer = self._link.call("destroy_stale", {"tenant": tenant_id}, timeout=LONG_TIMEOUT)
        return answer.get("destroyed") is True

    def reconcile(self, apply: bool) -> list[Drift]:
        answer = self._call("reconcile", {"apply": apply}, timeout=LONG_TIMEOUT)
        raw = answer.get("drifts")
        if not isinstance(raw, list):
            raise RemoteError(f"host {self.name} answered reconcile without its drifts")
        return [_drift(item, self.name) for item in raw[:MAX_DRIFTS]]

    def write_env(self, tenant_id: str, content: bytes, collection_id: str | None) -> tuple[str, bool]:
        """Write a rendered .env in the tenant's jail there: (its path there, changed)."""
        args = {"tenant": tenant_id, "env": _decoded(content, tenant_id), "collection_id": collection_id}
        answer = self._call("write_env", args)
        del args
        path, changed = answer.get("path"), answer.get("changed")
        if not isinstance(path, str) or not isinstance(changed, bool):
            raise RemoteError(f"host {self.name} answered write_env without its path and change")
        return f"{self.name}:{_cut(path)}", changed

    def show(self, tenant_id: str) -> dict[str, Any]:
        answer = self._link.call("show", {"tenant": tenant_id})  # a read: no audit entry
        jail = answer.get("jail")
        if not isinstance(jail, Mapping):
            raise RemoteError(f"host {self.name} answered show without the jail")
        return {k: _cut(str(jail.get(k))) for k in ("state", "managed", "root")}

    def _call(self, op: str, args: Mapping[str, Any], timeout: float | None = None) -> dict[str, Any]:
        """``op`` over the link, with what was asked and what came back in this host's audit log
        (the change itself is in that host's log): never the arguments' values (a rendered .env)."""
        if op == "reconcile" and not args.get("apply"):
            return self._link.call(op, args, timeout=timeout)  # a dry run changes nothing
        tenant = args.get("tenant") if isinstance(args.get("tenant"), str) else None
        asked = {"keys": list(args["keys"])} if isinstance(args.get("keys"), list) else {}
        try:
            answer = self._link.call(op, args, timeout=timeout)
        except ColibriError as exc:
            with contextlib.suppress(StoreError):  # the link's error is the one to report
                self._audit(op, tenant, "failed", error=f"{type(exc).__name__}: {exc.message}", **asked)
            raise
        error = answer.get("error")
        if isinstance(error, Mapping):  # a spawn that failed there (after its steps)
            self._audit(op, tenant, "failed", error=f"{error.get('type')}: {error.get('message')}", **asked)
        else:
            self._audit(op, tenant, "ok", **asked)
        return answer

    def _audit(self, op: str, tenant: str | None, outcome: str, **detail: Any) -> None:
        from colibri.store.audit_hooks import record

        subject = f"tenant:{tenant}" if tenant else f"host:{self.name}"
        with self._store.session() as session:
            record(session, f"remote.{op}", subject, tenant=tenant, outcome=outcome, host=self.name, **detail)

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


BATCH_BYTES = MAX_FRAME // 2
"""The most rendered .env bytes one spawn_many request carries (its frame stays under MAX_FRAME)."""


def _batches(batch: Sequence[tuple[str, "Rendered"]]) -> list[Sequence[tuple[str, "Rendered"]]]:
    """``batch`` in order, cut into runs of at most MAX_BATCH tenants and BATCH_BYTES of .env."""
    parts: list[Sequence[tuple[str, Rendered]]] = []
    start, size = 0, 0
    for index, (_tenant, rendered) in enumerate(batch):
        weight = 6 * len(rendered.content or b"") + 1024  # JSON's \u escapes at worst, plus the other fields
        if index > start and (index - start >= MAX_BATCH or size + weight > BATCH_BYTES):
            parts.append(batch[start:index])
            start, size = index, 0
        size += weight
    if start < len(batch):
        parts.append(batch[start:])
    return parts


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
