"""The public JSON views of agents and tasks (docs/openapi.yaml ``Agent``, ``Task``)."""

import json
from datetime import UTC, datetime
from typing import Any

from colibri.store.models import Agent, Task
from colibri.strictjson import load_checked


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.isoformat().replace("+00:00", "Z")


def _epoch_iso(value: float | None) -> str | None:
    return None if value is None else _iso(datetime.fromtimestamp(value, UTC).replace(microsecond=0))


def agent_public(agent: Agent) -> dict[str, Any]:
    return {
        "key": agent.key,
        "agent_id": agent.agent_id,
        "tenant": agent.tenant_id,
        "lane": agent.lane,
        "capabilities": json.loads(agent.capabilities),
        "mother_version": agent.mother_version,
        "state": agent.state,
        "host": agent.host,
        "registered_at": _iso(agent.registered_at),
        "last_seen_at": _iso(agent.last_seen_at),
    }


def task_public(task: Task, full: bool = True) -> dict[str, Any]:
    shown: dict[str, Any] = {
        "id": task.id,
        "tenant": task.tenant_id,
        "capability": task.capability,
        "state": task.state,
        "attempts": task.attempts,
        "max_attempts": task.max_attempts,
        "agent": task.agent_key,
        "error": task.error,
        "exit_status": task.exit_status,
        "created_at": _iso(task.created_at),
        "updated_at": _iso(task.updated_at),
        "finished_at": _iso(task.finished_at),
    }
    if full:
        shown["payload"] = load_checked(task.payload)
        shown["result"] = None if task.result is None else load_checked(task.result)
        shown["submitted_by"] = task.submitted_by
        shown["claimed_at"] = _iso(task.claimed_at)
        shown["lease_expires_at"] = _epoch_iso(task.lease_expires_at)
    shown["host"] = task.host  # issue 11: the host whose daemon claimed it last, and that claim's fence
    shown["fence"] = task.fence
    return shown
