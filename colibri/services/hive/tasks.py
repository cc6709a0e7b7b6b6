"""Tasks: submit, claim (a lease), finish, give back, requeue; capability routing by ``Scope``.

Task states (colibri.domain.TaskState): ``queued → running → succeeded | failed``; an expired
lease, a lost or re-registered agent puts a running task back to ``queued`` until
``max_attempts`` claims were spent, then it is ``failed`` with the reason.  Nothing is dropped
silently.
"""

import secrets
from collections.abc import Callable, Sequence
from typing import Any, cast

from sqlmodel import Session

from colibri.audit.entry import Event
from colibri.domain import TaskState, TenantStatus, check_task_transition, requeue_outcome, validate_tenant_id
from colibri.errors import (
    ColibriError,
    Conflict,
    InvalidInput,
    LimitExceeded,
    PermissionDenied,
    StateConflict,
    StoreError,
    TaskNotFound,
    TenantNotFound,
)
from colibri.services.hive.claims import lease_next
from colibri.services.hive.ledger import SYNC_SECONDS, Ledger
from colibri.services.hive.rules import (
    FINISHED,
    MAX_PAYLOAD_BYTES,
    AgentRef,
    Requeued,
    ResultTooLarge,
    Scope,
    encode_json,
    validate_idempotency_key,
    validate_name,
)
from colibri.services.hive.task_audit import append_finished, requeued
from colibri.services.hive.views import task_public
from colibri.store.audit import AuditRepo
from colibri.store.audit_hooks import event
from colibri.store.models import Task, utcnow
from colibri.store.owners import OwnerRepo
from colibri.store.tasks import TaskRepo

# finish()'s arguments: scope, agent key, task id, lease, ok, result, error, exit status, fence
Finish = tuple[Scope, str, int, str, bool, Any, str | None, int | None, int | None]


class TaskRules:
    def __init__(
        self, ledger: Ledger, token: Callable[[], str] = lambda: secrets.token_hex(16), host: str | None = None
    ) -> None:
        self._ledger = ledger
        self._token = token
        self._host = host  # this daemon's host: a claim names it, and only its daemon finishes it

    def submit(
        self, scope: Scope, capability: str, payload: Any, tenant: str | None = None, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """Queue a task.  On an agent socket the tenant is the socket's; naming another is refused.

        With an ``idempotency_key``, a repeat by the same submitter returns the task the first call
        created (``"created": false``); the same key with another capability, tenant or payload is a
        Conflict.  A tenant has at most ``max_queued_tasks`` unfinished tasks holding at most
        ``max_queued_bytes`` of payload (LimitExceeded beyond)."""
        return self.submit_handing(scope, capability, payload, tenant, idempotency_key)[0]

    def submit_handing(
        self, scope: Scope, capability: str, payload: Any, tenant: str | None = None,
        idempotency_key: str | None = None, agent: AgentRef | None = None, may_claim: Callable[[], bool] = lambda: True,
    ) -> tuple[dict[str, Any], dict[str, Any] | None]:  # fmt: skip
        """``submit``, and with ``agent`` (one waiting for work) its claim in the same transaction:
        one commit and one audit append where a submit and the claim it wakes took two each.  The
        claim is the one ``claim`` would make (the agent's next task by turn: this one, or an older
        one it may take); none for a repeat of an idempotency key or while ``may_claim`` says no
        (this daemon's host lease).  The task as submitted, and the claim's answer or None."""
        ledger = self._ledger
        validate_name(capability, "capability")
        tenant = task_tenant(scope, tenant)
        idempotency_key = validate_idempotency_key(idempotency_key)
        text = encode_json(payload, MAX_PAYLOAD_BYTES, "the payload")
        submitted_by = "operator" if scope.kind == "admin" else f"{scope.kind}:{scope.name}"
        fast = idempotency_key is None and not ledger.shared
        if fast and (full := ledger.queue_full(tenant, len(text))) is not None:
            raise LimitExceeded(full)  # known from the kept usage: no store work for a refusal
        with ledger.session() as session:
            tasks = TaskRepo(session)
            if idempotency_key is not None:
                earlier = tasks.by_idempotency_key(submitted_by, idempotency_key)
                if earlier is not None:
                    if (earlier.capability, earlier.tenant_id, earlier.payload) != (capability, tenant, text):
                        raise Conflict(
                            f"idempotency key {idempotency_key!r} was used for task {earlier.id} with another body"
                        )
                    return {**task_public(earlier), "created": False}, None
            if tenant is not None:
                found = OwnerRepo(session).tenant(tenant)
                if found is None or found.status == TenantStatus.REMOVED:
                    raise TenantNotFound(tenant)
                self._check_queue_room(session, tenant, len(text))
            task = Task(
                tenant_id=tenant,
                capability=capability,
                payload=text,
                state=TaskState.QUEUED,
                max_attempts=ledger.policy.max_attempts,
                submitted_by=submitted_by,
                idempotency_key=idempotency_key,
                turn=tasks.next_turn(tenant, capability),  # its round on a lane (review R14)
            )
            tasks.add(task)
            ledger.note(tenant, 1, len(text), 0, 0)
            shown = {**task_public(task), "created": True}
            entries = [event("task.submit", f"task:{task.id}", tenant=tenant, capability=capability,
                             payload_bytes=len(text), idempotency_key=idempotency_key)]  # fmt: skip
            answer = None
            if agent is not None and may_claim():
                answer = lease_next(session, self._ledger, self._token, self._host, [agent], entries)[0]
            AuditRepo(session).append_many(entries)  # one append: the submit's entry, and the claim's
            return shown, answer

    def _check_queue_room(self, session: Session, tenant: str, size: int) -> None:
        """A tenant has at most ``max_queued_tasks`` unfinished tasks holding ``max_queued_bytes``
        (on a shared store, counted in this transaction: other hosts finish its tasks too)."""
        if self._ledger.shared:
            self._ledger.forget(tenant)
        self._ledger.usage(tenant, session)
        full = self._ledger.queue_full(tenant, size)
        if full is not None:
            raise LimitExceeded(full)

    def claim(self, agent: AgentRef) -> dict[str, Any] | None:
        """Lease the oldest queued task this agent may take, or return None.

        The row is locked with ``FOR UPDATE SKIP LOCKED`` (another host's claim in flight is
        skipped, not waited for) and its update is fenced (``WHERE fence = <read>``): a task is
        never leased twice.  The claim takes the next fence and names this daemon's host; the
        answer carries both after the lease.
        """
        return self.claim_many([agent])[0]

    def claim_many(self, agents: Sequence[AgentRef]) -> list[dict[str, Any] | None]:
        """Claims for several waiting agents in one transaction (one commit: what batching saves),
        each one statement (``TaskRepo.claim_next``: the row picked, locked, fenced and leased at
        once, no ORM load and flush); on PostgreSQL the agents of one kind (capabilities, tenant)
        take theirs in one statement (``claim_several``), the oldest task to the first agent."""
        with self._ledger.store.session() as session:
            claimed: list[Event] = []  # their audit entries: one append for the turn
            answers = lease_next(session, self._ledger, self._token, self._host, agents, claimed)
            AuditRepo(session).append_many(claimed)
        return answers

    def finish(
        self, scope: Scope, key: str, task_id: int, lease: str, ok: bool, result: Any, error: str | None,
        exit_status: int | None, fence: int | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """Record a task's outcome.  Only the agent holding the current lease, through the daemon
        that claimed it (the task's host), may, and with the current fence when it names one;
        anything else is StateConflict (the lease expired and the task went back to the queue, or
        another claim on any host superseded it: the fenced update matches 0 rows).

        Idempotent: the same agent reporting again with the lease that finished the task (its first
        answer was lost) gets the task as it was recorded, and nothing changes."""
        answer = self.finish_many([(scope, key, task_id, lease, ok, result, error, exit_status, fence)])[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    def finish_many(self, reports: Sequence[Finish]) -> list[dict[str, Any] | ColibriError]:
        """Several outcomes (``finish``'s arguments each) in one transaction: each answer is the task
        or the error that one report alone would have raised (a refused report writes nothing, so
        it does not undo the others).  A store failure fails them all (nothing was committed).  On
        PostgreSQL the results held as said are written in one statement (``finish_several``)."""
        answers: list[dict[str, Any] | ColibriError | None] = [_refusal(report) for report in reports]
        todo = [index for index, answer in enumerate(answers) if answer is None]
        with self._ledger.session() as session:
            tasks = TaskRepo(session)
            rest = todo
            if len(todo) > 1 and tasks.many_at_once():
                several: list[dict[str, Any] | ColibriError | None] = [None] * len(todo)
                left = self._finish_several(tasks, [reports[index] for index in todo], several)
                for position, answer in enumerate(several):
                    if answer is not None:
                        answers[todo[position]] = answer
                rest = [todo[position] for position in left]
            for index in rest:
                try:
                    answers[index] = self._finish(session, *reports[index])
                except StoreError:
                    raise
                except ColibriError as exc:
                    answers[index] = exc
            append_finished(session, [reports[index] for index in todo], [answers[index] for index in todo])
        assert all(answer is not None for answer in answers)
        return cast(list[dict[str, Any] | ColibriError], answers)

    def _finish_several(
        self, tasks: TaskRepo, reports: Sequence[Finish], answers: list[dict[str, Any] | ColibriError | None]
    ) -> list[int]:
        """Write the held results of ``reports`` in one statement; the indexes left to look at one by
        one (not held so, or a task named twice)."""
        rows: list[tuple[Any, ...]] = []
        picked: list[int] = []
        rest: list[int] = []
        seen: set[int] = set()
        for index, (scope, key, task_id, lease, ok, result, error, exit_status, fence) in enumerate(reports):
            try:
                text = encode_json(result, self._ledger.policy.max_result_bytes, "the result", ResultTooLarge)
            except ColibriError as exc:
                answers[index] = exc
                continue
            if task_id in seen:
                rest.append(index)
                continue
            seen.add(task_id)
            state = TaskState.SUCCEEDED if ok else TaskState.FAILED
            owner = scope.name if scope.kind == "tenant" else None
            rows.append((task_id, key, lease, fence, owner, state, text, None if ok else (error or "failed")[:4000],
                         exit_status))  # fmt: skip
            picked.append(index)
        done = {int(row.n): row for row in tasks.finish_several(rows, self._host, utcnow())} if rows else {}
        for position, index in enumerate(picked):
            row = done.get(position)
            if row is None:
                rest.append(index)
                continue
            payload = len(row.payload)
            self._ledger.note(row.tenant_id, -1, -payload, 1, payload + len(row.result or ""))
            answers[index] = task_public(cast(Task, row))
        return sorted(rest)

    def _finish(
        self, session: Session, scope: Scope, key: str, task_id: int, lease: str, ok: bool, result: Any,
        error: str | None, exit_status: int | None, fence: int | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        result_text = encode_json(result, self._ledger.policy.max_result_bytes, "the result", ResultTooLarge)
        stamp = utcnow()
        values = {"state": TaskState.SUCCEEDED if ok else TaskState.FAILED, "result": result_text,
                  "error": None if ok else (error or "failed")[:4000], "exit_status": exit_status,
                  "lease_expires_at": None,  # the token stays: a repeated report is recognised
                  "finished_at": stamp, "updated_at": stamp}  # fmt: skip
        tenant = scope.name if scope.kind == "tenant" else None
        row = TaskRepo(session).finish_held(task_id, key, lease, self._host, fence, tenant, values)
        if row is not None:  # the usual case: held as said, finished in that one statement
            payload = len(row.payload)
            self._ledger.note(row.tenant_id, -1, -payload, 1, payload + len(row.result or ""))
            return task_public(cast(Task, row))
        task = _visible(session, scope, task_id, for_update=True)  # why not: a repeat, or a refusal
        repeat = task.state in FINISHED and task.agent_key == key and task.lease_token == lease
        if repeat and self._claimed_here(task, fence):
            return {**task_public(task), "repeat": True}  # its first answer was lost: nothing changes
        raise StateConflict(f"task {task_id} is not leased to {key} (its lease expired or it was requeued)")

    def _claimed_here(self, task: Task, fence: int | None) -> bool:
        """The task's current claim is this daemon's (a task claimed before issue 11 names no
        host), with ``fence`` when the caller names one."""
        return task.host in (None, self._host) and (fence is None or task.fence == fence)

    def release(self, task_id: int, lease: str, fence: int | None = None) -> bool:
        """Give a leased task back at once, as if never claimed (its lease never reached the agent):
        queued again, the attempt not counted.  False when that lease (and fence) no longer holds it."""
        with self._ledger.store.session() as session:
            task = TaskRepo(session).get(task_id, for_update=True)
            if task is None or task.state != TaskState.RUNNING or task.lease_token != lease:
                return False
            if not self._claimed_here(task, fence):
                return False
            agent = unclaim(task)  # whose lease it was: the entry names it, as every requeue's does
            session.add(task)
            requeued(session, task, agent, "the lease never reached its agent")
            return True

    def release_undelivered(self, key: str, started: float) -> list[Requeued]:
        """The agent asks for work while it holds leases claimed before ``started`` (this daemon's
        start, on the database's clock): an agent claims only with its hands free, so those leases
        never reached it (the daemon died between the claim's commit and its answer).  Queued again
        at once, as if never claimed; without this they waited out their whole lease.

        A lease claimed at ``t`` ends at ``t + lease_seconds``: one of this daemon's own ends at or
        after ``started + lease_seconds``, so it is never taken for an old one (a lease shortened
        across the restart may leave an old one to run out, the safe side)."""
        expiring_before = started + self._ledger.policy.lease_seconds
        with self._ledger.store.session() as session:
            given: list[Requeued] = []
            for task in TaskRepo(session).held_by(key, expiring_before):
                unclaim(task)
                session.add(task)
                assert task.id is not None
                requeued(session, task, key, "claimed before the daemon's restart, never delivered")
                given.append(Requeued(task.id, task.tenant_id, task.capability, task.state))
            return given

    def expire_leases(self) -> list[Requeued]:
        """Requeue running tasks whose lease ran out, on the database's clock (another host's
        daemon wrote most of these leases: review R3)."""
        self._ledger.sync_clock(SYNC_SECONDS)
        now = self._ledger.now()
        with self._ledger.session() as session:
            expired = TaskRepo(session).lease_expired(now)
            return [self.requeue(session, t, f"lease expired on agent {t.agent_key}") for t in expired]

    def requeue_held(self, session: Session, key: str, reason: str) -> list[Requeued]:
        return [self.requeue(session, task, reason) for task in TaskRepo(session).held_by(key)]

    def requeue(self, session: Session, task: Task, reason: str) -> Requeued:
        outcome = requeue_outcome(task.attempts, task.max_attempts)
        check_task_transition(task.id, task.state, outcome)
        task.state = outcome
        if outcome == TaskState.FAILED:
            task.error = f"gave up after {task.attempts} attempts: {reason}"
            task.finished_at = utcnow()
            self._ledger.note_finished(task)
        else:
            task.error = f"requeued: {reason}"
        agent, task.agent_key, task.lease_token, task.lease_expires_at = task.agent_key, None, None, None
        task.updated_at = utcnow()
        session.add(task)
        assert task.id is not None
        requeued(session, task, agent, reason, gave_up=outcome == TaskState.FAILED)
        return Requeued(task.id, task.tenant_id, task.capability, task.state)

    def task(self, scope: Scope, task_id: int) -> dict[str, Any]:
        """One task.  A tenant's socket sees only that tenant's tasks (others are TaskNotFound)."""
        with self._ledger.store.session() as session:
            return task_public(_visible(session, scope, task_id))

    def tasks(self, tenant: str | None = None, state: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Newest first, summaries (no payload, no result)."""
        with self._ledger.store.session() as session:
            found = TaskRepo(session).find(tenant, state, max(1, min(limit, 1000)))
            return [task_public(t, full=False) for t in found]

    def queued_kinds(self, capabilities: Sequence[str]) -> list[tuple[str | None, str]]:
        """(tenant, capability) of the queued tasks of these capabilities (the wake-ups' polling
        fallback)."""
        if not capabilities:
            return []
        with self._ledger.store.session() as session:
            return TaskRepo(session).queued_kinds(capabilities)

    def queued(self) -> list[tuple[int, str | None, str]]:
        """(id, tenant, capability) of every queued task: to wake waiting agents after a restart."""
        with self._ledger.store.session() as session:
            return TaskRepo(session).queued_refs()

    def task_counts(self) -> dict[str, int]:
        with self._ledger.store.session() as session:
            counts = dict.fromkeys((s.value for s in TaskState), 0)
            counts.update(TaskRepo(session).counts())
            return counts


def unclaim(task: Task) -> str | None:
    """Queued again as if never claimed: the attempt not counted, no agent, no lease; whose it was."""
    check_task_transition(task.id, task.state, TaskState.QUEUED)
    agent, task.state, task.updated_at = task.agent_key, TaskState.QUEUED, utcnow()
    task.attempts = max(0, task.attempts - 1)
    task.agent_key, task.lease_token, task.lease_expires_at, task.claimed_at = None, None, None, None
    return agent


def task_tenant(scope: Scope, tenant: str | None) -> str | None:
    """The tenant of a task submitted on ``scope`` naming ``tenant``: an agent's socket submits for its own."""
    if scope.kind == "admin":
        return None if tenant is None else validate_tenant_id(tenant)
    if tenant is not None and tenant != scope.tenant:
        raise PermissionDenied(f"this socket belongs to {scope.kind} {scope.name}; it cannot act for {tenant}")
    return scope.tenant


def _visible(session: Session, scope: Scope, task_id: int, for_update: bool = False) -> Task:
    task = TaskRepo(session).get(task_id, for_update=for_update)
    if task is None or (scope.kind == "tenant" and task.tenant_id != scope.name):
        raise TaskNotFound(f"task not found: {task_id}")
    return task


def _refusal(report: "Finish") -> InvalidInput | None:
    """What the database would refuse in a result is refused as input first (an exit status past 32
    bits, a NUL in the error): as a store error it would look like an outage (review R10)."""
    error, exit_status = report[6], report[7]
    if exit_status is not None and not -(2**31) <= exit_status < 2**31:
        return InvalidInput("exit_status must be a 32-bit integer (a process's exit status)")
    if error is not None and "\x00" in error:
        return InvalidInput("error holds a NUL character (U+0000), which colibri does not take")
    return None
