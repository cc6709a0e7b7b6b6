"""Leasing tasks to waiting agents inside a caller's transaction: a turn's batched claims
(``TaskRules.claim_many``) and the claim a submit makes for an agent waiting for it
(``TaskRules.submit_handing``) take their tasks the same way, here."""

from collections.abc import Callable, Sequence
from typing import Any, cast

from sqlmodel import Session

from colibri.audit.entry import Event
from colibri.services.hive.ledger import Ledger
from colibri.services.hive.rules import AgentRef
from colibri.services.hive.task_audit import claim_event
from colibri.services.hive.views import task_public
from colibri.store.models import Task, utcnow
from colibri.store.tasks import TaskRepo


def lease_next(
    session: Session, ledger: Ledger, token: Callable[[], str], host: str | None, agents: Sequence[AgentRef],
    claimed: list[Event],
) -> list[dict[str, Any] | None]:  # fmt: skip
    """Each agent's next task by turn, leased to it in ``session`` (``TaskRepo.claim_next``: the row
    picked, locked, fenced and leased at once; on PostgreSQL the agents of one kind (capabilities,
    tenant) take theirs in one statement, ``claim_several``, the oldest task to the first agent).
    The answers in the agents' order (None: nothing to take); their audit entries are added to
    ``claimed``, for the caller's one append."""
    policy = ledger.policy
    answers: list[dict[str, Any] | None] = [None] * len(agents)
    kinds: dict[tuple[tuple[str, ...], str | None], list[int]] = {}
    for index, agent in enumerate(agents):
        if agent.capabilities:
            kinds.setdefault((tuple(sorted(agent.capabilities)), agent.tenant), []).append(index)
    tasks = TaskRepo(session)
    for (capabilities, tenant), indexes in kinds.items():
        now, stamp = ledger.now(), utcnow()
        leases = [(agents[i].key, token(), now + policy.lease_seconds) for i in indexes]
        if len(indexes) > 1 and tasks.many_at_once():
            rows = tasks.claim_several(capabilities, tenant, leases, host, stamp)
        else:
            rows = []
            for key, lease, ends in leases:
                values = {"agent_key": key, "lease_token": lease, "lease_expires_at": ends,
                          "host": host, "claimed_at": stamp, "updated_at": stamp}  # fmt: skip
                row = tasks.claim_next(capabilities, tenant, values)
                if row is None:
                    break
                rows.append(row)
        for index, (_, lease, _), row in zip(indexes, leases, rows, strict=False):
            shown = task_public(cast(Task, row))
            where, fence = shown.pop("host"), shown.pop("fence")
            shown["lease"] = lease
            shown["lease_seconds"] = policy.lease_seconds
            shown["host"], shown["fence"] = where, fence
            answers[index] = shown
            claimed.append(claim_event(shown, agents[index].key))
    return answers
