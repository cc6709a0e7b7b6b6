"""Agents: register, deregister, liveness written in batches; and which owners get a socket.

Agent states (colibri.domain.AgentState): active, stale (a missed TTL), lost (past the grace:
what it held is requeued), left (it deregistered).  A new instance of a known agent cannot finish
what the old one held, so registering again requeues its running tasks.
"""

import json
from collections.abc import Iterable, Sequence
from typing import Any

from sqlmodel import Session

from colibri.domain import LIVE_AGENT_STATES, AgentState, TenantStatus, agent_may_become, validate_tenant_id
from colibri.errors import Conflict, InvalidInput, LimitExceeded, PermissionDenied, TenantNotFound
from colibri.services.hive.ledger import Ledger
from colibri.services.hive.rules import Requeued, Scope, validate_name
from colibri.services.hive.skillcheck import check_register, refused
from colibri.services.hive.tasks import TaskRules
from colibri.services.hive.views import agent_public
from colibri.store.agents import AgentRepo
from colibri.store.audit_hooks import agent_actor, record
from colibri.store.models import Agent, utcnow
from colibri.store.owners import OwnerRepo


class AgentRules:
    def __init__(self, ledger: Ledger, tasks: TaskRules, host: str | None = None) -> None:
        self._ledger = ledger
        self._tasks = tasks
        self._host = host  # this daemon's host (issue 11: the agents it serves are its own)

    def register(
        self,
        scope: Scope,
        agent_id: str,
        capabilities: list[dict[str, str]],
        mother_version: str | None,
        skills: list[dict[str, Any]] | None = None,
    ) -> tuple[dict[str, Any], list[Requeued]]:
        """Record (or renew) an agent as active; its running tasks go back to the queue.  A
        tenant's agent id still live on another host is taken over here when the tenant lives on
        this host (it moved); anything else live elsewhere is a Conflict.  A tenant's agent that
        loaded a skill, or offers a capability, its host did not install is refused
        (PermissionDenied, its ``agent.refuse`` entry kept; services/hive/skillcheck.py)."""
        key = scope.agent_key(validate_name(agent_id, "agent id"))
        if scope.kind == "tenant":
            with self._ledger.store.session() as session:
                why = check_register(session, str(scope.name), key, skills, [c["name"] for c in capabilities])
            if why is not None:
                raise refused(key, why)
        with self._ledger.session() as session:
            _check_owner(session, scope)
            self._check_host(session, scope)
            agents = AgentRepo(session)
            agent = agents.get(key)
            now = utcnow()
            if agent is not None and self._live_elsewhere(agent) and not self._supersedes(scope):
                raise Conflict(f"agent {key} is live on host {agent.host}; an agent id serves one host at a time")
            if agent is None or agent.state not in LIVE_AGENT_STATES:
                self._check_agent_room(agents, scope)
            if agent is None:
                agent = Agent(key=key, agent_id=agent_id, tenant_id=scope.tenant, state=AgentState.ACTIVE)
                agent.lane = scope.name if scope.kind == "lane" else None
            agent.capabilities = json.dumps(capabilities, separators=(",", ":"))
            agent.mother_version = mother_version
            agent.state, agent.host = AgentState.ACTIVE, self._host
            agent.registered_at = agent.last_seen_at = agent.state_changed_at = now
            agents.add(agent)
            record(session, "agent.register", f"agent:{key}", tenant=scope.tenant, actor=agent_actor(key),
                   capabilities=[c.get("name") for c in capabilities], mother_version=mother_version,
                   skills=[f"{s['name']}@{s['version']}" for s in skills or []])  # fmt: skip
            requeued = self._tasks.requeue_held(session, key, f"agent {key} registered again")
            agents.flush()
            return agent_public(agent), requeued

    def _live_elsewhere(self, agent: Agent) -> bool:
        return agent.state in LIVE_AGENT_STATES and agent.host not in (None, self._host)

    def _supersedes(self, scope: Scope) -> bool:
        """May a registration here take over a tenant's agent id still live on another host?  Only
        a tenant's agent on the daemon of the host the tenant lives on (``_check_host`` has refused
        any other): a moved tenant's mother is served at once on its new host, while its old row
        (on a host whose jail was destroyed) would otherwise hold the id until that host's daemon
        found it lost (review R11).  A lane is served on every host: its ids never move."""
        return self._fenced() and scope.kind == "tenant"

    def _mine(self, agent: Agent | None) -> bool:
        """Is this agent row this daemon's to change (it registered here, or before hosts were
        recorded)?  Once a tenant moved, its old host's daemon must not mark the row its new
        host's daemon took over lost or left (nor requeue what it holds there)."""
        return agent is None or not self._fenced() or agent.host in (None, self._host)

    def _fenced(self) -> bool:
        """Does this daemon serve only its own host's tenants?  Always, when it knows its host
        (a tenant of another host never gets a socket or an agent here, whatever the store)."""
        return self._host is not None

    def _check_host(self, session: Session, scope: Scope) -> None:
        """On a store shared by several hosts, a tenant's agents register with the daemon of the
        host the tenant lives on, and no other (its tasks are fenced to it)."""
        if not self._fenced() or scope.kind != "tenant":
            return
        tenant = OwnerRepo(session).tenant(str(scope.name))
        if tenant is not None and tenant.host != self._host:
            raise PermissionDenied(f"tenant {scope.name} lives on host {tenant.host}, not {self._host}")

    def _check_agent_room(self, agents: AgentRepo, scope: Scope) -> None:
        """A tenant (or lane) has at most ``max_agents`` live agents; its gone ones (left, lost) are
        pruned beyond that many, so registering new agent ids forever cannot grow the table."""
        limit = self._ledger.policy.max_agents
        live = agents.live_count(scope.kind, scope.name)
        if live >= limit:
            raise LimitExceeded(
                f"{scope.kind} {scope.name} already has {live} live agents (tenant_max_agents {limit}); "
                "deregister one first"
            )
        agents.delete_gone_beyond(scope.kind, scope.name, limit)

    def deregister(self, key: str) -> list[Requeued]:
        """Mark an agent gone (``left``) and requeue what it held."""
        with self._ledger.session() as session:
            agent = AgentRepo(session).get(key)
            if not self._mine(agent):
                return []  # the id is served by another host now (the tenant moved)
            if agent is not None:
                agent.state, agent.state_changed_at = AgentState.LEFT, utcnow()
                record(session, "agent.leave", f"agent:{key}", tenant=agent.tenant_id, actor=agent_actor(key))
            return self._tasks.requeue_held(session, key, f"agent {key} deregistered")

    def mark_lost(self, key: str) -> list[Requeued]:
        """An agent missed its heartbeats past the grace: requeue its tasks."""
        return self.set_states([(key, AgentState.LOST)])

    def set_states(self, changes: Sequence[tuple[str, str]]) -> list[Requeued]:
        """Write agent state changes in one transaction; tasks of agents now ``lost`` are requeued.
        An agent registered on another host since is that host's: left as it is."""
        requeued: list[Requeued] = []
        with self._ledger.session() as session:
            agents = AgentRepo(session)
            now = utcnow()
            for key, state in changes:
                agent = agents.get(key)
                if not self._mine(agent):
                    continue  # registered on another host since (the tenant moved): that host's
                if agent is not None and agent.state != state and agent_may_become(agent.state, state):
                    was, agent.state, agent.state_changed_at = agent.state, AgentState(state), now
                    record(session, _STATE_ACTIONS[state], f"agent:{key}", tenant=agent.tenant_id, was=was)
                if state == AgentState.LOST:
                    requeued += self._tasks.requeue_held(session, key, f"agent {key} was lost")
        return requeued

    def flush_heartbeats(self, beats: Sequence[tuple[str, float]]) -> int:
        """Write coalesced heartbeats (agent key, wall time) in one batched UPDATE, and in the same
        transaction extend the leases of the tasks these live agents run (one UPDATE): a task is
        rescued when its agent or its host is lost, never because a fixed window passed."""
        return self.flush(beats)[0]

    def flush(
        self, beats: Sequence[tuple[str, float]], beating: Sequence[str] | None = None, started: float = 0.0
    ) -> tuple[int, int]:
        """``flush_heartbeats`` returning (agent rows, task leases) written; ``beating``: every agent
        that beat since the last flush (default: those of ``beats``), whose tasks keep their lease;
        ``started``: when this daemon started (on the database's clock): only leases it gave are
        extended (one it gave ends at or after ``started + lease_seconds``)."""
        keys = [k for k, _ in beats] if beating is None else list(beating)
        if not beats and not keys:
            return 0, 0
        lease = self._ledger.policy.lease_seconds
        now = self._ledger.now()
        with self._ledger.store.session() as session:
            agents = AgentRepo(session)
            written = agents.write_heartbeats(beats) if beats else 0
            extended = agents.extend_task_leases(keys, now + lease, now + lease / 2, started + lease) if keys else 0
            return written, extended

    def load_agents(self) -> list[dict[str, Any]]:
        """Agents that may come back (active or stale) on this host (or named no host, before issue
        11): the daemon's registry starts from these; another host's agents are that host's."""
        with self._ledger.store.session() as session:
            return [agent_public(a) for a in AgentRepo(session).live() if a.host in (None, self._host)]

    def agents(self, tenant: str | None = None, state: str | None = None) -> list[dict[str, Any]]:
        with self._ledger.store.session() as session:
            return [agent_public(a) for a in AgentRepo(session).find(tenant, state)]

    # ---- sockets: which tenants and lanes get one --------------------------------------------

    def socket_owners(self) -> tuple[list[str], list[str]]:
        """Active tenants living on this host, and declared lanes: the daemon opens an agent socket
        for each (a lane is served on every host of the hive)."""
        with self._ledger.store.session() as session:
            owners = OwnerRepo(session)
            return owners.active_tenant_ids(self._host if self._fenced() else None), owners.lane_names()

    def tenant_for_socket(self, tenant_id: str) -> str:
        """The spawn pipeline asks for a tenant's socket: any tenant that is not removed may have one."""
        validate_tenant_id(tenant_id)
        with self._ledger.store.session() as session:
            tenant = OwnerRepo(session).tenant(tenant_id)
            if tenant is None or tenant.status == TenantStatus.REMOVED:
                raise TenantNotFound(tenant_id)
            if self._fenced() and tenant.host != self._host:
                raise PermissionDenied(f"tenant {tenant_id} lives on host {tenant.host}, not {self._host}")
            return tenant_id

    def removed_tenants(self, candidates: Iterable[str]) -> list[str]:
        """Which of these tenants are gone (removed or deleted): their sockets are closed."""
        wanted = list(candidates)
        if not wanted:
            return []
        with self._ledger.store.session() as session:
            kept = OwnerRepo(session).kept_tenant_ids(wanted)
            return [t for t in wanted if t not in kept]

    def agent_gid(self, tenant_id: str, agent_id: int) -> int | None:
        """The tenant's agent gid from its row (None: no block yet; spawn sets the directory)."""
        with self._ledger.store.session() as session:
            tenant = OwnerRepo(session).tenant(tenant_id)
            return None if tenant is None or tenant.uid_base is None else tenant.uid_base + agent_id

    def declare_lane(self, name: str) -> bool:
        """Declare a shared lane (idempotent).  Returns True when it is new."""
        validate_tenant_id(name)  # a lane's socket directory follows the tenant rules
        with self._ledger.store.session() as session:
            owners = OwnerRepo(session)
            if owners.lane(name) is not None:
                return False
            owners.add_lane(name)
            record(session, "lane.declare", f"lane:{name}")
            return True


def _check_owner(session: Session, scope: Scope) -> None:
    owners = OwnerRepo(session)
    if scope.kind == "tenant":
        tenant = owners.tenant(str(scope.name))
        if tenant is None or tenant.status == TenantStatus.REMOVED:
            raise TenantNotFound(str(scope.name))
    elif scope.kind == "lane" and owners.lane(str(scope.name)) is None:
        raise InvalidInput(f"lane not declared: {scope.name}")


_STATE_ACTIONS = {"active": "agent.revive", "stale": "agent.stale", "lost": "agent.lost", "left": "agent.leave"}
"""The audit action of an agent's liveness change (never each heartbeat: only a change of state)."""
