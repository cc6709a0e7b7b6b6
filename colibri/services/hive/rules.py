"""The hive's value types and input rules: who is calling, the liveness and retry numbers, names.

No store here: the daemon checks a request with these before it queues any store work.
"""

import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from colibri.domain import FINISHED_TASK_STATES, MAX_CAPABILITIES, AgentState, TaskState, validate_name
from colibri.domain import capabilities_from_objects as parse_capabilities
from colibri.errors import InvalidInput, PermissionDenied, ResultTooLarge
from colibri.settings import Settings

AGENT_STATES = tuple(s.value for s in AgentState)
TASK_STATES = tuple(s.value for s in TaskState)
FINISHED = frozenset(s.value for s in FINISHED_TASK_STATES)
UNFINISHED = (TaskState.QUEUED.value, TaskState.RUNNING.value)
MAX_PAYLOAD_BYTES = 256 * 1024
MAX_RESULT_BYTES = 256 * 1024  # the default of task_max_result_bytes
PRUNE_BATCH = 500  # finished tasks deleted by age per run (the next run takes the rest)
_IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9_.:-]{1,128}", re.ASCII)

__all__ = [
    "MAX_CAPABILITIES",
    "ResultTooLarge",
    "parse_capabilities",
    "validate_name",
]  # re-exported: its home is colibri.errors (the client maps it back)


def validate_idempotency_key(value: object) -> str | None:
    """None, or 1-128 ASCII letters, digits, '_', '.', ':', '-' (a UUID fits)."""
    if value is None:
        return None
    if not isinstance(value, str) or not _IDEMPOTENCY_KEY.fullmatch(value):
        raise InvalidInput("idempotency_key must be 1-128 ASCII letters, digits, '_', '.', ':' or '-'")
    return value


@dataclass(frozen=True)
class Scope:
    """Who is calling, as decided by the socket: the admin socket, a tenant's or a lane's."""

    kind: Literal["admin", "tenant", "lane"]
    name: str | None = None

    def agent_key(self, agent_id: str) -> str:
        if self.kind == "tenant":
            return f"{self.name}/{agent_id}"
        if self.kind == "lane":
            return f"lane:{self.name}/{agent_id}"
        raise PermissionDenied("agents register on a tenant's or a lane's socket, not the admin socket")

    @property
    def tenant(self) -> str | None:
        return self.name if self.kind == "tenant" else None


@dataclass(frozen=True)
class Policy:
    """The liveness and retry numbers, from the settings (reloaded on SIGHUP)."""

    heartbeat_interval: float = 10.0
    heartbeat_rate_limit: float = 200.0
    stale_after: float = 30.0
    lost_after: float = 90.0
    lease_seconds: float = 300.0
    max_attempts: int = 3
    max_agents: int = 32  # live agents per tenant (or lane)
    max_queued_tasks: int = 1000  # unfinished tasks per tenant
    max_queued_bytes: int = 64 * 1024 * 1024  # their payload bytes per tenant
    max_finished_tasks: int = 1000  # finished tasks kept per tenant, the oldest pruned beyond
    max_finished_bytes: int = 64 * 1024 * 1024  # their payload + result bytes per tenant
    retention_seconds: float = 7 * 86400.0  # finished tasks older than this are deleted
    max_result_bytes: int = MAX_RESULT_BYTES

    @classmethod
    def from_settings(cls, settings: Settings) -> "Policy":
        return cls(
            heartbeat_interval=settings.heartbeat_interval,
            heartbeat_rate_limit=settings.heartbeat_rate_limit,
            stale_after=settings.agent_stale_after,
            lost_after=max(settings.agent_lost_after, settings.agent_stale_after),
            lease_seconds=settings.task_lease_seconds,
            max_attempts=settings.task_max_attempts,
            max_agents=settings.tenant_max_agents,
            max_queued_tasks=settings.tenant_max_queued_tasks,
            max_queued_bytes=settings.tenant_max_queued_payload_bytes,
            max_finished_tasks=settings.tenant_max_finished_tasks,
            max_finished_bytes=settings.tenant_max_finished_bytes,
            retention_seconds=settings.task_retention_seconds,
            max_result_bytes=settings.task_max_result_bytes,
        )

    def base_interval(self, agents: int, scopes: int = 1) -> float:
        """Nomad's rule, per tenant: the host's heartbeat rate is shared fairly between the tenants
        (and lanes) that have live agents, and a tenant's interval grows with its own agents only.

        ``agents`` is the caller's tenant's live agents, ``scopes`` how many tenants have any.  Each
        tenant gets ``rate / scopes`` beats per second, so the fleet stays under the rate limit and
        one tenant's 4,000 agents stretch that tenant's interval, not another's.
        """
        return max(self.heartbeat_interval, agents * max(scopes, 1) / self.heartbeat_rate_limit)

    def next_interval(self, agents: int, rand: Callable[[], float] = random.random, scopes: int = 1) -> float:
        """The interval handed to an agent: the base plus up to 25 % jitter, never below the base
        (so the sum over all agents stays under the rate limit) against thundering herds."""
        return self.base_interval(agents, scopes) * (1.0 + 0.25 * rand())

    def ttls(self, interval: float) -> tuple[float, float]:
        """Seconds without a heartbeat before an agent is stale, and lost.

        Never on the first miss: stale needs at least 2.5 intervals of silence; the grace between
        stale and lost keeps the configured gap (kubelet's lesson: 40 s flapped, 50 s did not).
        """
        stale = max(self.stale_after, 2.5 * interval)
        return stale, stale + (self.lost_after - self.stale_after)


@dataclass(frozen=True)
class AgentRef:
    """What routing needs to know about a live agent."""

    key: str
    tenant: str | None
    lane: str | None
    capabilities: frozenset[str]


@dataclass(frozen=True)
class Requeued:
    task_id: int
    tenant: str | None
    capability: str
    state: str  # queued again, or failed when attempts ran out


def encode_json(value: Any, limit: int, what: str, error: type[InvalidInput] = InvalidInput) -> str:
    """Compact JSON, ASCII only (``ensure_ascii``): its length is its size in bytes."""
    text = json.dumps(value, separators=(",", ":"), allow_nan=False)
    if len(text) > limit:
        raise error(f"{what} is larger than {limit} bytes ({limit // 1024} KiB)")
    return text
