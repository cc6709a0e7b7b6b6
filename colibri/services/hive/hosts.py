"""Host leases and host loss (issue 11): the rules, on the store; the daemon's loop is
colibri/daemon/hostlease.py.

Each daemon holds a lease on its own ``hosts`` row: a term (``lease_term``, taken at start and
again whenever the host was declared lost) and an end (``lease_expires_at``, seconds since the
epoch on the DATABASE's clock, colibri/store/clock.py: every host writes and judges leases on that
one clock, so a host whose own clock is off is neither declared lost while it renews nor able to
requeue a live host's tasks; review R3).  It renews with one small UPDATE and stops trusting its
lease at ``end - margin`` (River's rule): past it, it claims nothing until a renewal succeeds.
A host whose lease ended more than ``grace`` ago is declared lost by whichever daemon gets there
first: in ONE transaction its row becomes ``lost``, its live agents ``lost``, and the tasks they
held are requeued by the usual rules (attempts, max_attempts), which clears their lease so a late
answer from the lost host is refused.

One daemon per host name (review R7): a daemon does not start while another holds a live lease
under its name, unless that lease's term is the one its own previous run took (a restart after
a crash; the daemon keeps that term in its run directory, colibri/daemon/hostlease.py).  Renewing
never creates the row: a host removed with ``colibri hosts remove`` stays removed and its daemon,
should it still run, stops (review R13).

A daemon declares others lost only once it has itself held its lease without a lapse for a whole
lease + grace: after it started, or after its own lease ran out (the store was unreachable, or the
daemon stood still), every other host first gets a full lease + grace to renew.  Without that, the
first daemon back after a database outage longer than lease + grace would declare every other
live host lost (their leases "expired" while nobody could renew) and re-run their tasks.
"""

import functools
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from colibri.errors import HostNotFound, StateConflict
from colibri.services.hive.ledger import SYNC_SECONDS, Ledger
from colibri.services.hive.rules import Requeued
from colibri.services.hive.tasks import TaskRules
from colibri.store.agents import AgentRepo
from colibri.store.audit import AuditRepo
from colibri.store.audit_hooks import event, record
from colibri.store.hosts import HostRepo

log = logging.getLogger("colibri.hive")
RESCUE_LOCK_WAIT_MS = 2000
T = TypeVar("T")


@dataclass(frozen=True)
class HostLost:
    """One host declared lost by this daemon: the agents marked lost, the tasks requeued."""

    host: str
    agents: list[str]
    requeued: list[Requeued]


@dataclass
class OwnLease:
    """This daemon's lease on its host, as last written (``term`` 0: none taken yet)."""

    term: int = 0
    expires: float = 0.0


class HostRules:
    def __init__(self, ledger: Ledger, tasks: TaskRules, host: str, seconds: float = 30.0, grace: float = 10.0) -> None:
        self._ledger = ledger
        self._tasks = tasks
        self.host = host
        self.seconds = seconds
        self.grace = grace
        self.lease = OwnLease()
        self._steady_since = 0.0  # since when this daemon has held its lease without a lapse

    @property
    def margin(self) -> float:
        """How long before its end this daemon stops trusting its own lease."""
        return max(0.2, self.seconds / 6)

    def clock(self) -> float:
        """Now on the database's clock, the one every lease is written and judged by (review R3)."""
        return self._ledger.now()

    def trusted(self) -> bool:
        """Is the lease still ours to act on (claim work)?  False before the first term, and from
        ``end - margin`` until a renewal succeeds."""
        return self.lease.term > 0 and self._ledger.now() < self.lease.expires - self.margin

    def start(self, prior_term: int = 0, create: bool = True) -> list[str]:
        """Take a new term (state up).  Returns this host's agents found ``lost`` (the other daemons
        declared the host lost while it was away): they must register again.

        Refused (StateConflict) while another daemon holds a live lease under this host's name
        (review R7): state up, its end not passed, a term other than ``prior_term`` (the term this
        host's previous daemon took, which a restart after a crash finds in its run directory).
        ``create`` False (a term taken again, not a start): a removed host's row is not brought
        back (review R13): HostNotFound."""
        self._ledger.sync_clock()
        now = self._ledger.now()
        expires = now + self.seconds
        with self._ledger.store.session() as session:
            hosts = HostRepo(session)
            row = hosts.get(self.host, for_update=True)
            if row is None and not create:
                raise HostNotFound(self.host)
            if row is not None and row.state == "up" and row.lease_term != prior_term:
                left = (row.lease_expires_at or 0.0) - now
                if left > 0:
                    raise StateConflict(
                        f"another colibri daemon holds host {self.host}'s lease (term {row.lease_term}, "
                        f"{math.ceil(left)} s left): set host in colibri.toml to this machine's own name, or "
                        f"stop the other daemon; if it is gone, start again in {math.ceil(left)} s"
                    )
            term = hosts.take_term(row, self.host, expires)
            lost = AgentRepo(session).keys_in_state(self.host, "lost")
            record(session, "host.up", f"host:{self.host}", term=term, lost_agents=len(lost))
        self.lease = OwnLease(term, expires)
        self._steady_since = now
        return lost

    def renew(self) -> tuple[bool, list[str]]:
        """Renew the lease (one UPDATE).  ``(True, [])`` when renewed; ``(False, lost agents)`` when
        the term was no longer ours: the host had been declared lost and a new term is taken now.
        StateConflict when another daemon holds this host's lease now, HostNotFound when the host
        was removed (``colibri hosts remove``): this daemon has no lease and must stop."""
        self._ledger.sync_clock(SYNC_SECONDS)
        now = self._ledger.now()
        expires = now + self.seconds
        with self._ledger.store.session() as session:
            renewed = HostRepo(session).renew(self.host, self.lease.term, expires)
        if renewed:
            if now >= self.lease.expires:  # our own lease had lapsed before this renewal
                self._steady_since = now
            self.lease = OwnLease(self.lease.term, expires)
            return True, []
        self.lease = OwnLease()  # not ours any more: nothing is claimed on it, whatever comes next
        return False, self.start(create=False)

    def rescue(self) -> list[HostLost]:
        """Declare lost every other host whose lease ended more than ``grace`` ago; its agents lost
        and their tasks requeued, in one transaction (of racing daemons, one does each host)."""
        self._ledger.sync_clock(SYNC_SECONDS)
        now = self._ledger.now()
        if not self.trusted() or now - self._steady_since < self.seconds + self.grace:
            return []  # others first get a whole lease + grace to renew after our own start or lapse
        cutoff = now - self.grace
        found: list[HostLost] = []
        with self._ledger.session() as session:
            HostRepo(session).bound_lock_waits(RESCUE_LOCK_WAIT_MS)  # a StoreError now: retried next check
            for name in HostRepo(session).mark_expired_lost(cutoff, self.host):
                agents = AgentRepo(session)
                keys = agents.mark_host_lost(name)
                record(session, "host.lost", f"host:{name}", outcome="failed", agents=len(keys))
                lost = [event("agent.lost", f"agent:{key}", tenant=_tenant_of(key), host=name) for key in keys]
                AuditRepo(session).append_many(lost)
                requeued = [
                    self._tasks.requeue(session, t, f"host {name} was lost") for t in agents.tasks_held_on(name)
                ]
                found.append(HostLost(name, keys, requeued))
        return found

    def stop(self) -> None:
        """A clean stop: the row says ``down`` (a planned stop is not a loss)."""
        if self.lease.term:
            with self._ledger.store.session() as session:
                HostRepo(session).release(self.host, self.lease.term)
                record(session, "host.down", f"host:{self.host}", term=self.lease.term)
        self.lease = OwnLease()

    def gate_many(
        self, claim: Callable[[Sequence[T]], list[dict[str, Any] | None]]
    ) -> Callable[[Sequence[T]], list[dict[str, Any] | None]]:
        """The batched claim, held to the same rule: nothing for anyone while the lease is not trusted."""

        @functools.wraps(claim)
        def gated(agents: Sequence[T]) -> list[dict[str, Any] | None]:
            return claim(agents) if self.trusted() else [None] * len(agents)

        return gated

    def gate(self, claim: Callable[[T], dict[str, Any] | None]) -> Callable[[T], dict[str, Any] | None]:
        """A claim that takes nothing while this daemon does not trust its own lease."""

        @functools.wraps(claim)
        def gated(agent: T) -> dict[str, Any] | None:
            return claim(agent) if self.trusted() else None

        return gated


def _tenant_of(key: str) -> str | None:
    """The tenant of an agent key (``<tenant>/<id>``; a lane's agent has none)."""
    return None if key.startswith("lane:") else key.split("/", 1)[0]
