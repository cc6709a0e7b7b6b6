"""``HiveService``: the hive's rules on agents, tasks, capability routing, leases and retries (issue 5).

Everything here is blocking and talks to the store through its repositories (colibri/store:
agents, tasks, owners); the daemon calls it from one database thread, so the rules run one at a
time.  Who is calling is a ``Scope`` that the daemon derives from the socket a request came in
on, never from the request itself:

* a tenant's agent sees and takes only that tenant's tasks;
* a lane agent (a shared lane the operator declared) takes any tenant's tasks and operator tasks;
* an operator task (no tenant) goes to lane agents only.

The parts (this package's other modules): ``rules`` (value types, input checks), ``views`` (the
public JSON), ``ledger`` (each tenant's usage, retention), ``tasks``, ``agents`` and ``hosts``
(the rules on each table; hosts: this daemon's lease and the loss of another host).
``HiveService`` is the one object the daemon holds.
"""

import functools
import secrets
import time
from collections.abc import Callable, Sequence
from typing import Any

from colibri.services.hive.agents import AgentRules
from colibri.services.hive.hosts import HostRules
from colibri.services.hive.ledger import Ledger
from colibri.services.hive.rules import AgentRef, Policy
from colibri.services.hive.tasks import TaskRules
from colibri.store.db import Store


class HiveService:
    """Agents and tasks in the store.  Blocking: the daemon runs it on its database thread."""

    def __init__(
        self,
        store: Store,
        policy: Policy,
        clock: Callable[[], float] = time.time,
        token: Callable[[], str] = lambda: secrets.token_hex(16),
        host: str | None = None,
        host_lease: tuple[float, float] = (30.0, 10.0),
    ) -> None:
        self._store = store
        self._ledger = ledger = Ledger(store, policy, clock)
        tasks = TaskRules(ledger, token, host)
        agents = AgentRules(ledger, tasks, host)
        # host: this daemon's host (issue 11): its lease gates claims; None (tests, the CLI): no gate
        self.hosts = HostRules(ledger, tasks, host or "", *host_lease)
        self.usage, self.queue_full, self.prune_expired = ledger.usage, ledger.queue_full, ledger.prune_expired
        self.submit, self.finish, self.release = tasks.submit, tasks.finish, tasks.release
        self.finish_many = tasks.finish_many
        self.claim: Callable[[AgentRef], dict[str, Any] | None] = (
            tasks.claim if host is None else self.hosts.gate(tasks.claim)
        )
        self.release_undelivered, self.expire_leases = tasks.release_undelivered, tasks.expire_leases
        # a submit handed to a waiting agent: its claim held to the same lease as every claim
        self.submit_handing: Callable[..., tuple[dict[str, Any], dict[str, Any] | None]] = (
            tasks.submit_handing
            if host is None
            else functools.partial(tasks.submit_handing, may_claim=self.hosts.trusted)
        )
        self.queued_kinds = tasks.queued_kinds
        self.claim_many: Callable[[Sequence[AgentRef]], list[dict[str, Any] | None]] = (
            tasks.claim_many if host is None else self.hosts.gate_many(tasks.claim_many)
        )
        self.task, self.tasks, self.queued, self.task_counts = tasks.task, tasks.tasks, tasks.queued, tasks.task_counts
        self.register, self.deregister, self.mark_lost = agents.register, agents.deregister, agents.mark_lost
        self.set_states, self.flush_heartbeats, self.flush = agents.set_states, agents.flush_heartbeats, agents.flush
        self.load_agents, self.agents = agents.load_agents, agents.agents
        self.socket_owners, self.tenant_for_socket = agents.socket_owners, agents.tenant_for_socket
        self.removed_tenants, self.declare_lane, self.agent_gid = (
            agents.removed_tenants, agents.declare_lane, agents.agent_gid
        )  # fmt: skip

    @property
    def policy(self) -> Policy:
        return self._ledger.policy

    @policy.setter
    def policy(self, policy: Policy) -> None:  # SIGHUP: the numbers change, the usage is kept
        self._ledger.policy = policy
