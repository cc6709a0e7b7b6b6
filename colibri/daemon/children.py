"""An agent's children over its own socket (issue 14): ``POST /v1/children``, ``GET /v1/children[/ID]``.

The parent is the socket's tenant (its ``Scope``); a ``parent`` or ``tenant`` in the body is
ignored.  The body is checked and bounded before any store work; the answer comes at once: 202
with the child's id and where to poll, or 403 with the policy's rule and reason.  The spawn runs
in ``colibri spawn-child CHILD`` (services/children/spawner.py), a process of its own in its own
session, so the daemon's loop never waits on a jail and a spawner outlives a daemon killed under
it; the loop here starts one again for any child whose reservation is neither used nor released
(and the sweep releases what expired), so a kill -9 of either converges.
"""

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from colibri.adapters import detached
from colibri.daemon.requests import body_object
from colibri.daemon.wire import Request, Response, json_response
from colibri.domain import MAX_CAPABILITIES, capabilities_from_specs, validate_host_name, validate_name
from colibri.errors import InvalidInput, NotFound, PermissionDenied, PolicyDenied
from colibri.services.children.service import Ask, ChildService
from colibri.services.hive.rules import Scope
from colibri.store.children import ChildRepo

log = logging.getLogger("colibri.daemon")
MAX_SKILLS = 64
MAX_SPAWNERS = 4  # spawners running at once; the loop starts the rest as these end
CONVERGE_SECONDS = 2.0
_SPEC = 64 + 1 + 32  # NAME@VERSION at its longest


def ask_of(body: dict[str, Any]) -> Ask:
    """The request's fields, each checked and bounded; anything else in the body is ignored."""
    agent_id = validate_name(body.get("agent_id"), "agent id")
    capabilities = _strings(body.get("capabilities", []), "capabilities", MAX_CAPABILITIES, _SPEC)
    capabilities_from_specs(list(capabilities))  # NAME or NAME@VERSION, each
    if len(set(c.partition("@")[0] for c in capabilities)) != len(capabilities):
        raise InvalidInput("capabilities must not name one capability twice")
    template = body.get("template")
    if template is not None:
        template = validate_name(template, "template")
    skills = _strings(body.get("skills", []), "skills", MAX_SKILLS, 64)
    for skill in skills:
        validate_name(skill, "skill")
    host = body.get("host")
    if host is not None:
        if not isinstance(host, str) or len(host) > 253:
            raise InvalidInput("host must be a host name of at most 253 characters")
        host = validate_host_name(host)
    return Ask(agent_id, capabilities, template, skills, host)


def _strings(value: object, what: str, most: int, longest: int) -> tuple[str, ...]:
    if not isinstance(value, list) or len(value) > most:
        raise InvalidInput(f"{what} must be a list of at most {most} strings")
    if not all(isinstance(v, str) and 0 < len(v) <= longest for v in value):
        raise InvalidInput(f"{what} must be a list of strings of 1 to {longest} characters")
    if len(set(value)) != len(value):
        raise InvalidInput(f"{what} must not repeat a name")
    return tuple(value)


def parent_of(scope: Scope) -> str:
    if scope.kind != "tenant" or scope.name is None:
        raise PermissionDenied("children are asked for on a tenant's own agent socket")
    return scope.name


class Children:
    """The routes and the spawners.  ``service()`` is built by the daemon (it holds the store)."""

    def __init__(
        self,
        db: Callable[..., Awaitable[Any]],
        service: Callable[[], ChildService | None],
        sweep: Callable[[], Any] | None,
        repo: Callable[[Callable[[ChildRepo], Any]], Any],
        argv: Callable[[str], list[str]],
        log_file: Callable[[], Path],
    ) -> None:
        self._db = db
        self._service = service
        self._sweep = sweep
        self._repo = repo  # runs a read on a ChildRepo in one session (on the database thread)
        self._argv = argv  # the spawner's command line for a child
        self._log_file = log_file
        self.running: dict[str, asyncio.subprocess.Process] = {}
        self._reapers: set[asyncio.Task[None]] = set()

    def _live(self) -> ChildService:
        found = self._service()
        if found is None:
            raise NotFound("children are not served by this daemon")
        return found

    # ---- the routes -----------------------------------------------------------------------------

    async def ask(self, request: Request, scope: Scope) -> Response:
        parent = parent_of(scope)
        ask = ask_of(body_object(request))
        service = self._live()
        answer = await self._db(lambda: service.ask(parent, ask, actor=f"agent:{parent}/{ask.agent_id}"))
        if not answer.allowed:
            log.info("child of %s denied (%s)", parent, answer.rule)
            error = {"type": "PolicyDenied", "code": PolicyDenied.exit_code, "message": answer.reason}
            return json_response(403, {"error": error, "rule": answer.rule})
        assert answer.child is not None
        log.info("child %s of %s allowed (%s); spawning", answer.child, parent, answer.rule)
        await self.launch(answer.child)
        return json_response(202, {"child": answer.child, "parent": parent, "status": "spawning",
                                   "reservation": answer.reservation, "rule": answer.rule, "depth": answer.depth,
                                   "poll": f"/v1/children/{answer.child}"})  # fmt: skip

    async def listing(self, request: Request, scope: Scope) -> Response:
        parent, service = parent_of(scope), self._live()
        return json_response(200, {"children": await self._db(service.children, parent)})

    async def one(self, request: Request, scope: Scope) -> Response:
        parent, service = parent_of(scope), self._live()
        child = request.params["child"]
        if len(child) > 64:
            raise InvalidInput("a child id is at most 64 characters")
        return json_response(200, await self._db(service.child, parent, child))

    # ---- the spawners ---------------------------------------------------------------------------

    async def launch(self, child: str) -> bool:
        """Start ``colibri spawn-child CHILD`` unless one of this daemon's runs for it, or
        MAX_SPAWNERS do (the loop starts it later)."""
        if child in self.running or len(self.running) >= MAX_SPAWNERS:
            return False
        proc = await detached.start(self._argv(child), self._log_file())
        self.running[child] = proc
        reaper = asyncio.ensure_future(self._reap(child, proc))
        self._reapers.add(reaper)
        reaper.add_done_callback(self._reapers.discard)
        return True

    async def _reap(self, child: str, proc: asyncio.subprocess.Process) -> None:
        code = await proc.wait()
        self.running.pop(child, None)
        if code != 0:
            log.warning("spawn-child %s exited %d (the children loop looks again)", child, code)

    async def converge(self) -> None:
        """The loop's body: the policy's sweep, then a spawner for each child left half-way."""
        if self._service() is None:
            return
        if self._sweep is not None:
            released = await self._db(self._sweep)
            if released:
                log.info("spawn reservations released by the sweep: %d", released)
        pending = await self._db(self._repo, lambda repo: repo.pending_children())
        for child, _reservation, _state in pending:
            if child not in self.running:
                await self.launch(child)


def spawner_argv(config: Path | None) -> Callable[[str], list[str]]:
    prefix = [sys.executable, "-m", "colibri"] + (["--config", str(config)] if config is not None else [])
    return lambda child: [*prefix, "spawn-child", child]


def for_daemon(daemon: Any, config: Path | None) -> Children:
    """The daemon's part, built with it; its service once the daemon's store is open (``_start``)."""
    built: dict[str, Any] = {}

    def store() -> Any:
        return getattr(daemon, "_store", None)

    def service() -> ChildService | None:
        current = store()
        if current is None:
            return None
        if built.get("store") is not current:
            from colibri.services.policy.service import SpawnPolicyService

            policy = SpawnPolicyService(current, reservation_ttl=daemon.settings.spawn_reservation_ttl)
            built.update(store=current, policy=policy, service=ChildService(current, policy, daemon.settings.host))
        found: ChildService = built["service"]
        return found

    def sweep() -> int:
        return int(built["policy"].sweep()) if service() is not None else 0

    def repo(read: Callable[[ChildRepo], Any]) -> Any:
        with store().session() as session:
            return read(ChildRepo(session))

    return Children(daemon.db, service, sweep, repo, spawner_argv(config),
                    lambda: Path(daemon.settings.log_dir) / "children.log")  # fmt: skip
