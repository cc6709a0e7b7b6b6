"""The routes of API version 1 (docs/openapi.yaml), for the admin socket and the agent sockets.

Each agent socket is bound to one tenant (or lane) when it is opened; every handler gets that
``Scope`` from the socket and checks any ``tenant`` a body names against it (403 when it differs).
Errors are ColibriErrors raised by the service, mapped here once to a status and a JSON envelope
``{"error": {"type", "code", "message"}}`` whose ``code`` is colibri's exit code.
"""

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

from colibri import __version__
from colibri.audit import origin
from colibri.daemon.dispatcher import Dispatcher
from colibri.daemon.http import BadRequest, Request, Response, Router, error_response, json_response, log_bug
from colibri.daemon.logfilter import about
from colibri.daemon.metrics import CONTENT_TYPE, Metrics
from colibri.daemon.requests import (
    body_number,
    body_object,
    claim_check,
    query_number,
    task_id_of,
    tenant_query,
    until,
)
from colibri.daemon.sockets import Sockets
from colibri.domain import TaskState, validate_name, validate_tenant_id
from colibri.domain import capabilities_from_objects as parse_capabilities
from colibri.errors import (
    INTERNAL_ERROR_EXIT,
    AgentNotFound,
    ColibriError,
    Conflict,
    DaemonError,
    InvalidInput,
    LimitExceeded,
    NotFound,
    PermissionDenied,
    ResultTooLarge,
    StoreError,
)
from colibri.services.hive.rules import AGENT_STATES, FINISHED, TASK_STATES, Policy, Scope
from colibri.services.hive.service import HiveService
from colibri.services.hive.skillcheck import parse_loaded

log = logging.getLogger("colibri.daemon")
MAX_WAIT = 30.0
MAX_LIMIT = 1000  # GET /v1/tasks?limit=
ACTIONS = frozenset({"reload-secrets"})
_STATUS: list[tuple[type[ColibriError], int]] = [
    (NotFound, 404), (Conflict, 409), (PermissionDenied, 403), (ResultTooLarge, 413), (InvalidInput, 400),
    (StoreError, 503), (LimitExceeded, 429), (DaemonError, 503),
]  # fmt: skip

Route = Callable[[Request, Scope], "Response | Awaitable[Response]"]
STORE_DOWN = "the hive's database is unavailable; try again later"
STOPPING = (503, "DaemonError", DaemonError.exit_code, "the daemon is stopping")
INTERNAL = (500, "ColibriError", INTERNAL_ERROR_EXIT, "internal error")


@dataclass
class Parts:
    """What the routes use of the daemon: built by the daemon's process, which the API never sees."""

    metrics: Metrics
    dispatcher: Dispatcher
    sockets: Sockets
    db: Callable[..., Awaitable[Any]]
    hive: Callable[[], HiveService]
    policy: Callable[[], Policy]
    health: Callable[[], Awaitable[dict[str, Any]]]
    metrics_text: Callable[[], Awaitable[str]]
    stopping: Callable[[], bool]
    outbox: Callable[[dict[str, Any]], None] | None = None  # a completion kept while the store is down
    children: Any = None  # daemon/children.py Children: an agent's children (issue 14)


def actor_of(scope: Scope) -> str:
    """Who a request's audit entries name: the socket's owner (``operator:admin-socket``,
    ``tenant:<t>``, ``lane:<l>``), never what the body says.  An agent's own changes (register,
    deregister, its claims and results) name the agent itself (``agent:<t>/<id>``: the key the
    daemon made from the socket's owner and the registered id), set on each entry."""
    return "operator:admin-socket" if scope.kind == "admin" else f"{scope.kind}:{scope.name}"


def error_for(exc: ColibriError, scope: Scope | None = None) -> Response:
    status = next((s for cls, s in _STATUS if isinstance(exc, cls)), 500)
    if status == 500:  # every 500 is logged, with its traceback (never the request body)
        log.error("internal error: %s", type(exc).__name__, exc_info=exc)
    message = str(exc)
    if isinstance(exc, StoreError) and scope is not None and scope.kind != "admin":
        message = STORE_DOWN  # the database's address and its error are the operator's, not a jail's
    return error_response(status, type(exc).__name__, exc.exit_code, message)


class Api:
    """Route handlers over the daemon's state.  ``handler(scope)`` is what a socket serves."""

    def __init__(self, parts: Parts) -> None:
        self.p = parts
        self.admin = Router()
        self.agent = Router()
        self.metrics_only = Router()
        for router in (self.admin, self.agent):
            router.add("GET", "/health", self.health)
            router.add("POST", "/v1/tasks", self.submit)
            router.add("GET", "/v1/tasks/{task_id}", self.task)
        self.admin.add("GET", "/metrics", self.metrics)
        self.admin.add("GET", "/v1/agents", self.agents)
        self.admin.add("GET", "/v1/tasks", self.tasks)
        self.admin.add("POST", "/v1/tenants/{tenant}/socket", self.open_socket)
        self.admin.add("DELETE", "/v1/tenants/{tenant}/socket", self.close_socket)
        self.admin.add("POST", "/v1/tenants/{tenant}/actions", self.action)
        self.admin.add("POST", "/v1/lanes/{lane}", self.declare_lane)
        self.agent.add("POST", "/v1/agent/register", self.register)
        self.agent.add("POST", "/v1/agent/heartbeat", self.heartbeat)
        self.agent.add("POST", "/v1/agent/deregister", self.deregister)
        self.agent.add("POST", "/v1/tasks/claim", self.claim)
        self.agent.add("POST", "/v1/tasks/{task_id}/result", self.result)
        self.agent.add("POST", "/v1/children", self.child_ask)  # an agent's own socket only (issue 14)
        self.agent.add("GET", "/v1/children", self.child_listing)
        self.agent.add("GET", "/v1/children/{child}", self.child_one)
        self.metrics_only.add("GET", "/metrics", self.metrics)
        self.metrics_only.add("GET", "/health", self.health)

    def _children(self) -> Any:
        children = getattr(self.p, "children", None)  # the daemon's part (daemon/children.py)
        if children is None:
            raise NotFound("this daemon makes no children")
        return children

    async def child_ask(self, request: Request, scope: Scope) -> Response:
        return cast(Response, await self._children().ask(request, scope))

    async def child_listing(self, request: Request, scope: Scope) -> Response:
        return cast(Response, await self._children().listing(request, scope))

    async def child_one(self, request: Request, scope: Scope) -> Response:
        return cast(Response, await self._children().one(request, scope))

    def handler(self, scope: Scope, router: Router | None = None) -> Callable[[Request], Any]:
        routes = router or (self.admin if scope.kind == "admin" else self.agent)
        kind = scope.kind
        metrics = self.p.metrics

        def handle(request: Request) -> "Response | Awaitable[Response]":
            response = self._dispatch(routes, request, scope)
            if isinstance(response, Response):
                metrics.inc("colibri_http_requests_total", socket=kind, status=str(response.status))
                return response
            return self._later(response, scope, request)

        return handle

    def _dispatch(self, routes: Router, request: Request, scope: Scope) -> "Response | Awaitable[Response]":
        if self.p.stopping():
            return error_response(*STOPPING, close=True)
        target = routes.match(request)
        if target == 404:
            version = request.path.split("/")[1] if request.path.count("/") > 1 else ""
            if version.startswith("v") and version != "v1":
                message = f"unsupported API version {version!r}: this daemon speaks v1"
            else:
                message = f"no such route: {request.path[:100]}"
            return error_response(404, "NotFound", NotFound.exit_code, message)
        if target == 405:
            allow = ", ".join(routes.allowed(request.path))
            response = error_response(
                405, "InvalidInput", InvalidInput.exit_code, f"method {request.method[:20]} not allowed here: {allow}"
            )
            response.headers["Allow"] = allow  # RFC 9110 §15.5.6
            return response
        assert callable(target)
        try:
            return target(request, scope)  # type: ignore[no-any-return]
        except ColibriError as exc:
            return error_for(exc, scope)
        except BadRequest as exc:
            return error_response(exc.status, "InvalidInput", InvalidInput.exit_code, str(exc))
        except Exception as exc:  # a bug: logged with its traceback (never the body), answered 500
            log_bug(request, exc)
            return error_response(*INTERNAL, close=True)

    async def _later(self, pending: Awaitable[Response], scope: Scope, request: Request) -> Response:
        kind = scope.kind
        try:
            with origin.acting(actor_of(scope)):  # the request's store calls record under it
                response = await pending
        except ColibriError as exc:
            response = error_for(exc, scope)
        except BadRequest as exc:
            response = error_response(exc.status, "InvalidInput", InvalidInput.exit_code, str(exc))
        except Exception as exc:  # a bug: logged with its traceback (never the body), answered 500
            log_bug(request, exc)
            response = error_response(*INTERNAL, close=True)
        self.p.metrics.inc("colibri_http_requests_total", socket=kind, status=str(response.status))
        return response

    # ---- agents ---------------------------------------------------------------------------------

    async def register(self, request: Request, scope: Scope) -> Response:
        body = body_object(request)
        claim_check(body, scope)
        agent_id = validate_name(body.get("agent_id"), "agent id")
        capabilities = parse_capabilities(body.get("capabilities", []))
        mother = body.get("mother_version")
        if mother is not None and (not isinstance(mother, str) or len(mother) > 32):
            raise InvalidInput("mother_version must be a string of at most 32 characters")
        skills = parse_loaded(body.get("skills"))  # issue 13: what the mother loaded, checked against the store
        record, requeued = await self.p.db(self.p.hive().register, scope, agent_id, capabilities, mother, skills)
        agent = self.p.dispatcher.registry.upsert(record)
        self.p.dispatcher.forget(agent.key)  # register requeued what it held
        self.p.dispatcher.after_requeue(requeued)
        stale, lost = self.p.policy().ttls(agent.interval)
        shown = ", ".join(sorted(agent.capabilities)) or "no capabilities"
        log.info("agent %s registered (%s)", agent.key, shown, extra=about(agent.key))
        answer = {"agent": record, "interval": round(agent.interval, 3), "stale_after": stale, "lost_after": lost}
        return json_response(200, {**answer, "lease_seconds": self.p.policy().lease_seconds})

    def heartbeat(self, request: Request, scope: Scope) -> Response:
        body = body_object(request)
        claim_check(body, scope)
        key = scope.agent_key(validate_name(body.get("agent_id"), "agent id"))
        agent = self.p.dispatcher.registry.beat(key)
        if agent is None:
            raise AgentNotFound(f"agent not registered (or lost): {key}; register again")
        actions = self.p.dispatcher.registry.take_actions(agent) if agent.actions else []
        return json_response(200, {"interval": round(agent.interval, 3), "actions": actions})

    async def deregister(self, request: Request, scope: Scope) -> Response:
        body = body_object(request)
        claim_check(body, scope)
        key = scope.agent_key(validate_name(body.get("agent_id"), "agent id"))
        requeued = await self.p.db(self.p.hive().deregister, key)
        self.p.dispatcher.registry.remove(key)
        self.p.dispatcher.after_requeue(requeued)
        log.info("agent %s deregistered", key, extra=about(key))
        return json_response(200, {"agent": key, "requeued": [r.task_id for r in requeued]})

    async def agents(self, request: Request, scope: Scope) -> Response:
        state = request.query.get("state")
        if state is not None and state not in AGENT_STATES:
            raise InvalidInput(f"unknown agent state {state[:20]!r}: one of {', '.join(AGENT_STATES)}")
        stored = await self.p.db(self.p.hive().agents, tenant_query(request), None)
        shown = []
        for record in stored:
            live = self.p.dispatcher.registry.get(record["key"])
            if live is not None:
                record["state"] = live.state
                record["heartbeat_interval"] = round(live.interval, 3)
            if state is None or record["state"] == state:
                shown.append(record)
        return json_response(200, {"agents": shown})

    async def action(self, request: Request, scope: Scope) -> Response:
        tenant = validate_tenant_id(request.params["tenant"])
        body = body_object(request)
        action = body.get("action")
        if not isinstance(action, str) or action not in ACTIONS:  # a dict or list is unhashable: not a 500
            shown = action[:30] if isinstance(action, str) else type(action).__name__
            raise InvalidInput(f"unknown action {shown!r}: one of {', '.join(sorted(ACTIONS))}")
        count = self.p.dispatcher.registry.queue_action(tenant, action)
        return json_response(200, {"tenant": request.params["tenant"], "action": action, "agents": count})

    # ---- tasks ----------------------------------------------------------------------------------

    async def submit(self, request: Request, scope: Scope) -> Response:
        body = body_object(request)
        claim_check(body, scope)
        if "payload" not in body:
            raise InvalidInput("a task needs a payload (any JSON value)")
        tenant = body.get("tenant")
        if tenant is not None and not isinstance(tenant, str):
            raise InvalidInput("tenant must be a string")
        key = body.get("idempotency_key")
        task = await self.p.dispatcher.submit(scope, body.get("capability"), body["payload"], tenant, key)
        if task["created"]:
            self.p.metrics.inc("colibri_tasks_submitted_total")
        if task["state"] == TaskState.QUEUED:
            task["waiting"] = self.p.dispatcher.registry.waiting_reason(task["tenant"], task["capability"])
        return json_response(201 if task["created"] else 200, task)

    async def task(self, request: Request, scope: Scope) -> Response:
        task_id = task_id_of(request)
        wait = query_number(request, "wait", 0, 0, MAX_WAIT)
        task = await self.p.db(self.p.hive().task, scope, task_id)
        if wait > 0 and task["state"] not in FINISHED:
            self.p.dispatcher.task_waits += 1
            try:
                await until(self.p.dispatcher.task_event(task_id), wait, request)
            finally:
                self.p.dispatcher.task_waits -= 1
            if request.gone:
                return json_response(200, task)  # nobody reads it: no second look at the store
            task = await self.p.db(self.p.hive().task, scope, task_id)
        if task["state"] == TaskState.QUEUED:
            task["waiting"] = self.p.dispatcher.registry.waiting_reason(task["tenant"], task["capability"])
        return json_response(200, task)

    async def tasks(self, request: Request, scope: Scope) -> Response:
        state = request.query.get("state")
        if state is not None and state not in TASK_STATES:
            raise InvalidInput(f"unknown task state {state[:20]!r}: one of {', '.join(TASK_STATES)}")
        limit = int(query_number(request, "limit", 100, 1, MAX_LIMIT, integer=True))
        found = await self.p.db(self.p.hive().tasks, tenant_query(request), state, limit)
        return json_response(200, {"tasks": found})

    async def claim(self, request: Request, scope: Scope) -> Response:
        """Long-poll: a lease on a task this agent may take, or 204 after ``wait`` seconds."""
        body = body_object(request)
        claim_check(body, scope)
        key = scope.agent_key(validate_name(body.get("agent_id"), "agent id"))
        wait = body_number(body.get("wait", 0), "wait", 0, MAX_WAIT)
        task = await self.p.dispatcher.claim(key, wait, request.conn)
        if task is None:
            return Response(204)
        self.p.metrics.inc("colibri_tasks_claimed_total")
        response = json_response(200, task)
        response.unsent = lambda: self.p.dispatcher.give_back_later(task)  # the client went while we claimed
        return response

    async def result(self, request: Request, scope: Scope) -> Response:
        body = body_object(request)
        claim_check(body, scope)
        key = scope.agent_key(validate_name(body.get("agent_id"), "agent id"))
        lease, ok = body.get("lease"), body.get("ok")
        if not isinstance(lease, str) or not isinstance(ok, bool):
            raise InvalidInput('a result needs "lease" (string) and "ok" (boolean)')
        error, status = body.get("error"), body.get("exit_status")
        if error is not None and not isinstance(error, str):
            raise InvalidInput("error must be a string")
        if status is not None and (not isinstance(status, int) or isinstance(status, bool)):
            raise InvalidInput("exit_status must be an integer")
        fence = body.get("fence")  # optional: the claim's fencing token, checked when given
        if fence is not None and (not isinstance(fence, int) or isinstance(fence, bool) or not 0 < fence < 2**63):
            raise InvalidInput("fence must be a positive integer (the claim's)")
        finish, task_id = self.p.dispatcher.finish, task_id_of(request)  # batched with others' results
        try:
            task = await finish(scope, key, task_id, lease, ok, body.get("result"), error, status, fence)
        except StoreError:
            if self.p.outbox is None:
                raise
            record = {"task": task_id, "scope": [scope.kind, scope.name], "agent": key, "lease": lease, "ok": ok,
                      "result": body.get("result"), "error": error, "exit_status": status, "fence": fence}  # fmt: skip
            self.p.outbox(record)  # fsync'd before the answer; StoreError (503) when it cannot be kept
            self.p.metrics.inc("colibri_tasks_finished_total", outcome="outbox")
            return json_response(202, {"id": task_id, "state": "accepted", "outbox": True})
        self.p.metrics.inc("colibri_tasks_finished_total", outcome=task["state"])
        self.p.dispatcher.finished(task["id"])
        return json_response(200, task)

    # ---- sockets, lanes, health, metrics ------------------------------------------------------

    async def open_socket(self, request: Request, scope: Scope) -> Response:
        tenant = await self.p.db(self.p.hive().tenant_for_socket, request.params["tenant"])
        path = await self.p.sockets.open_agent_socket("tenant", tenant)
        return json_response(200, {"tenant": tenant, "socket": str(path), "directory": str(path.parent)})

    async def close_socket(self, request: Request, scope: Scope) -> Response:
        closed = await self.p.sockets.close_agent_socket("tenant", validate_tenant_id(request.params["tenant"]))
        return json_response(200, {"tenant": request.params["tenant"], "closed": closed})

    async def declare_lane(self, request: Request, scope: Scope) -> Response:
        created = await self.p.db(self.p.hive().declare_lane, request.params["lane"])
        path = await self.p.sockets.open_agent_socket("lane", request.params["lane"])
        return json_response(200, {"lane": request.params["lane"], "created": created, "socket": str(path)})

    async def health(self, request: Request, scope: Scope) -> Response:
        if scope.kind != "admin":
            return json_response(200, {"status": "ok", "version": __version__})
        return json_response(200, await self.p.health())

    async def metrics(self, request: Request, scope: Scope) -> Response:
        text = await self.p.metrics_text()
        return Response(200, text.encode(), content_type=CONTENT_TYPE)
