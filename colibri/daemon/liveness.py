"""The in-memory agent registry: heartbeats land here, cheaply, and are written in batches.

A heartbeat touches a dict entry and a dirty set: no database write, no allocation beyond the
answer.  The liveness sweep turns silence into ``stale`` (after the stale TTL) and ``lost`` (after
the grace), never on a first miss; the flush loop writes the coalesced last-seen times in one
batched UPDATE.  After a daemon restart every known agent gets a fresh TTL (Nomad's failover
heartbeat idea): the daemon being down is not the agents' fault.
"""

import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from colibri.domain import LIVE_AGENT_STATES, AgentState
from colibri.services.hive.rules import AgentRef, Policy


@dataclass
class LiveAgent:
    key: str
    tenant: str | None
    lane: str | None
    capabilities: frozenset[str]
    state: str = AgentState.ACTIVE
    last_seen: float = 0.0  # monotonic
    last_seen_wall: float = 0.0
    interval: float = 10.0
    actions: list[str] = field(default_factory=list)
    written: float = float("-inf")  # monotonic: when its last_seen_at was last written to the store

    @property
    def scope(self) -> str:
        """The tenant (or lane) whose share of the heartbeat rate this agent uses."""
        return f"lane:{self.lane}" if self.lane is not None else str(self.tenant)

    def ref(self) -> AgentRef:
        return AgentRef(self.key, self.tenant, self.lane, self.capabilities)


class Registry:
    """Agents the daemon knows, with their liveness.  Single-threaded: the event loop owns it."""

    def __init__(
        self,
        policy: Policy,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.policy = policy
        self._clock = clock
        self._wall = wall
        self._rand = rand
        self._agents: dict[str, LiveAgent] = {}
        self._dirty: set[str] = set()
        self._live = 0  # agents in state active or stale
        self._by_scope: dict[str, int] = {}  # live agents per tenant (or lane): the N of the interval rule
        self.heartbeats = 0
        # a beating agent's row is rewritten at most this often (0: every flush); a state change
        # (stale → active) is written at the next flush whatever this says
        self.write_every = 0.0
        self._last_sweep: float | None = None

    def _gain(self, agent: LiveAgent) -> None:
        self._live += 1
        self._by_scope[agent.scope] = self._by_scope.get(agent.scope, 0) + 1

    def _drop(self, agent: LiveAgent) -> None:
        self._live -= 1
        left = self._by_scope.get(agent.scope, 1) - 1
        if left > 0:
            self._by_scope[agent.scope] = left
        else:
            self._by_scope.pop(agent.scope, None)

    def live_in(self, scope: str) -> int:
        """Live (active or stale) agents of one tenant (``tenant``) or lane (``lane:<name>``)."""
        return self._by_scope.get(scope, 0)

    @property
    def scopes(self) -> int:
        """How many tenants and lanes have live agents (the heartbeat rate is shared between them)."""
        return len(self._by_scope)

    def interval_for(self, scope: str) -> float:
        """The base interval (without jitter) of one tenant's or lane's agents."""
        return self.policy.base_interval(self._by_scope.get(scope, 0), len(self._by_scope))

    def __len__(self) -> int:
        return len(self._agents)

    def __iter__(self) -> Iterator[LiveAgent]:
        return iter(self._agents.values())

    def get(self, key: str) -> LiveAgent | None:
        return self._agents.get(key)

    def upsert(self, record: dict[str, Any]) -> LiveAgent:
        """Add or renew an agent from its public record (register, or the store at start-up)."""
        old = self._agents.pop(record["key"], None)
        if old is not None and old.state in LIVE_AGENT_STATES:
            self._drop(old)
        agent = LiveAgent(
            key=record["key"],
            tenant=record["tenant"],
            lane=record["lane"],
            capabilities=frozenset(c["name"] for c in record["capabilities"]),
            state=AgentState.ACTIVE if record["state"] in LIVE_AGENT_STATES else record["state"],
            last_seen=self._clock(),
            last_seen_wall=self._wall(),
            written=self._clock(),  # registering wrote its row (at start-up: the row is there)
        )
        self._agents[agent.key] = agent
        if agent.state in LIVE_AGENT_STATES:
            self._gain(agent)
        mine = max(1, self._by_scope.get(agent.scope, 0))
        agent.interval = self.policy.next_interval(mine, self._rand, max(1, len(self._by_scope)))
        return agent

    def remove(self, key: str) -> None:
        agent = self._agents.pop(key, None)
        self._dirty.discard(key)
        if agent is not None and agent.state in LIVE_AGENT_STATES:
            self._drop(agent)

    def drop_lost(self, keys: list[str]) -> int:
        """Agents the store says are lost (another daemon declared this host lost while it was
        frozen or cut off): their next heartbeat is told to register again.  Nothing is written."""
        dropped = 0
        for key in keys:
            agent = self._agents.get(key)
            if agent is not None and agent.state in LIVE_AGENT_STATES:
                agent.state = AgentState.LOST
                self._drop(agent)
                self._dirty.discard(key)
                dropped += 1
        return dropped

    def beat(self, key: str) -> LiveAgent | None:
        """Record a heartbeat.  None when the agent is unknown or lost: it must register again."""
        agent = self._agents.get(key)
        if agent is None or agent.state not in LIVE_AGENT_STATES:
            return None
        self.heartbeats += 1
        agent.last_seen = self._clock()
        agent.last_seen_wall = self._wall()
        if agent.state != AgentState.ACTIVE:
            agent.written = float("-inf")  # its row says stale: written at the next flush
        agent.state = AgentState.ACTIVE
        scopes = self._by_scope
        agent.interval = self.policy.next_interval(scopes[agent.scope], self._rand, len(scopes))
        self._dirty.add(key)
        return agent

    def take_actions(self, agent: LiveAgent) -> list[str]:
        actions, agent.actions = agent.actions, []
        return actions

    def queue_action(self, tenant: str, action: str) -> int:
        """Deliver ``action`` with the next heartbeat of every live agent of ``tenant``."""
        count = 0
        for agent in self._agents.values():
            if agent.tenant == tenant and agent.state in LIVE_AGENT_STATES and action not in agent.actions:
                agent.actions.append(action)
                count += 1
        return count

    def sweep(self, tick: float | None = None) -> list[tuple[str, str]]:
        """Apply the TTLs; returns the (key, new state) transitions to write.

        ``tick``: how often the daemon sweeps.  A gap much longer (over 2 ticks + 1 s) means the
        daemon itself did not run (frozen, SIGSTOP, swapped out; or this loop was held up, the
        safe side): its agents could not reach it,
        so the stall is credited to every agent (as at a restart) instead of making them lost;
        the host lease (another daemon's view) is what judges a frozen host."""
        now = self._clock()
        last, self._last_sweep = self._last_sweep, now
        if tick is not None and last is not None and now - last > 2 * tick + 1.0:
            stall = now - last - tick
            for agent in self._agents.values():
                agent.last_seen += stall
        changes: list[tuple[str, str]] = []
        for agent in self._agents.values():
            if agent.state not in LIVE_AGENT_STATES:
                continue
            stale_ttl, lost_ttl = self.policy.ttls(agent.interval)
            silent = now - agent.last_seen
            if silent >= lost_ttl:
                agent.state = AgentState.LOST
                self._drop(agent)
                self._dirty.discard(agent.key)
                changes.append((agent.key, AgentState.LOST))
            elif silent >= stale_ttl and agent.state == AgentState.ACTIVE:
                agent.state = AgentState.STALE
                self._dirty.discard(agent.key)  # the flush marks rows active; stale must win
                changes.append((agent.key, AgentState.STALE))
        return changes

    def take_dirty(self) -> list[tuple[str, float]]:
        """The coalesced heartbeats since the last flush: one row per agent, however many beats."""
        return self.take_flush()[0]

    def take_flush(self) -> tuple[list[tuple[str, float]], list[str]]:
        """What a flush writes: the rows (agent, last seen) due (one per agent however many beats,
        and per agent at most once every ``write_every`` seconds), and every agent that beat since
        the last flush (their running tasks' leases are extended)."""
        now, every, agents = self._clock(), self.write_every, self._agents
        beating = [k for k in self._dirty if k in agents]
        rows: list[tuple[str, float]] = []
        for key in beating:
            agent = agents[key]
            if now - agent.written >= every:
                agent.written = now
                rows.append((key, agent.last_seen_wall))
        self._dirty.clear()
        return rows, beating

    def restore_dirty(self, batch: list[tuple[str, float]]) -> None:
        """A flush failed (store unavailable): keep the beats for the next one."""
        for key, _ in batch:
            agent = self._agents.get(key)
            if agent is not None:
                agent.written = float("-inf")
                self._dirty.add(key)

    def restore_flush(self, rows: list[tuple[str, float]], beating: list[str]) -> None:
        self.restore_dirty(rows)
        self._dirty.update(k for k in beating if k in self._agents)

    def counts(self) -> dict[str, int]:
        counts = {state.value: 0 for state in AgentState}
        for agent in self._agents.values():
            counts[agent.state] = counts.get(agent.state, 0) + 1
        return counts

    def may_take(self, agent: LiveAgent, tenant: str | None, capability: str) -> bool:
        """Routing: a tenant's task goes to that tenant's agents or to lane agents, never another's."""
        if agent.state != AgentState.ACTIVE or capability not in agent.capabilities:
            return False
        return agent.lane is not None or (tenant is not None and agent.tenant == tenant)

    def waiting_reason(self, tenant: str | None, capability: str) -> str | None:
        """Why a queued task waits, when no live agent could take it (None if one could)."""
        if any(self.may_take(a, tenant, capability) for a in self._agents.values()):
            return None
        who = f"of tenant {tenant} or a lane" if tenant is not None else "on a lane"
        return f"waiting: no active agent {who} offers capability {capability!r}"
