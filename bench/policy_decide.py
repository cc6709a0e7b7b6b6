"""Issue 14: a spawn decision's latency (target p99 < 2 ms).

Three measures in one run: the rule module alone (colibri/policy/rules.py ``evaluate``, a lineage
of one and of three tenants); ``SpawnPolicyService.decide`` on an SQLite store (WAL,
synchronous=NORMAL), opened as a command opens it (SQLite checkpoints the WAL in the commit that
takes it past 1,000 pages) and as the daemon does (a thread checkpoints it every second,
store/walcheckpoint.py): the policy row locked and its rate window advanced, the lineage, switch
and children read, the rules, a reservation inserted when allowed, the ``policy.decide`` audit
entry, the commit; allowed ones (a quota never reached) and denied ones (at the quota); and the
floor: one transaction that only appends an audit entry (``record``), the least a decision that is
audited before it acts can cost.  ``--pg URL``: the same decide on that PostgreSQL too.
Prints Markdown for docs/PERFORMANCE.md.

    .venv/bin/python bench/policy_decide.py [--count 2000] [--pg postgresql+psycopg://...]
"""

import argparse
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable

from colibri.audit import origin
from colibri.policy.model import SpawnPolicy
from colibri.policy.rules import Inputs, evaluate
from colibri.services.policy.service import ChildRequest, SpawnPolicyService
from colibri.services.tenants import TenantService
from colibri.store.audit_hooks import record
from colibri.store.db import Store
from colibri.store.policy import PolicyRepo


def timed(count: int, call: Callable[[int], object]) -> tuple[float, float]:
    """(p50, p99) in milliseconds of ``count`` calls, after 50 not counted."""
    for n in range(50):
        call(n)
    samples = []
    for n in range(count):
        begin = time.perf_counter()
        call(n)
        samples.append((time.perf_counter() - begin) * 1000)
    cuts = statistics.quantiles(samples, n=100)
    return statistics.median(samples), cuts[98]


def rules(count: int) -> list[tuple[str, float, float]]:
    wide = SpawnPolicy("q", allowed=True, max_depth=3, max_children=10, rate=100, capabilities=("echo", "fetch"))
    one = Inputs(False, ("q",), {"q": wide}, children=3, recent=5, capabilities=("echo",))
    chain = {t: SpawnPolicy(t, allowed=True, max_depth=3, capabilities=("echo",)) for t in ("r", "s")} | {"q": wide}
    three = Inputs(False, ("r", "s", "q"), chain, children=0, recent=1, capabilities=("echo",))
    return [("rules alone, lineage of 1", *timed(count, lambda _n: evaluate(one))),
            ("rules alone, lineage of 3", *timed(count, lambda _n: evaluate(three)))]  # fmt: skip


def decides(url: str, label: str, count: int, checkpoints: float | None = None) -> list[tuple[str, float, float]]:
    store = Store(url, wal_checkpoints=checkpoints)
    try:
        service = TenantService(store, "bench")
        for tenant in ("queen", "full"):
            service.register(tenant, None, None)
        with store.session() as session:
            repo = PolicyRepo(session)
            repo.put(SpawnPolicy("queen", allowed=True, max_children=10**9, rate=10**9), None, exists=False)
            repo.put(SpawnPolicy("full", allowed=True, max_children=0, max_depth=1, rate=10**9), None, exists=False)
        policy = SpawnPolicyService(store, clock=time.time)
        allow = ChildRequest("queen", "a1")
        deny = ChildRequest("full", "a1")

        def floor(n: int) -> None:
            with store.session() as session:
                record(session, "policy.decide", "tenant:queen", tenant="queen", rule="floor", n=n)

        def allowed(_n: int) -> object:
            return policy.decide(allow, actor="agent:queen/a1")

        def denied(_n: int) -> object:
            return policy.decide(deny, actor="agent:full/a1")

        found = [
            (f"{label}: decide, allowed (reservation + entry)", *timed(count, allowed)),
            (f"{label}: decide, denied at the quota (entry)", *timed(count, denied)),
            (f"{label}: floor, a transaction with one audit entry", *timed(count, floor)),
        ]  # fmt: skip
        assert policy.decide(allow, actor="a").allowed and not policy.decide(deny, actor="a").allowed
        return found
    finally:
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--pg", default=None)
    args = parser.parse_args()
    rows = rules(args.count * 10)
    with origin.acting("agent:queen/a1", host="bench"), tempfile.TemporaryDirectory() as tmp:
        rows += decides(f"sqlite:///{tmp}/bench.db", "SQLite, checkpoints in the commit (a CLI command)", args.count)
        rows += decides(f"sqlite:///{tmp}/daemon.db", "SQLite as the daemon opens it", args.count, checkpoints=1.0)
        if args.pg:
            rows += decides(args.pg, "PostgreSQL", args.count)
    load = open("/proc/loadavg").read().split()[:3] if os.path.exists("/proc/loadavg") else ["?"]  # noqa: SIM115
    print(f"{platform.node()}, Python {platform.python_version()}, {os.cpu_count()} CPUs, load {' '.join(load)}")
    print()
    print("| what | p50 | p99 |")
    print("|---|---:|---:|")
    for what, p50, p99 in rows:
        print(f"| {what} | {p50:.3f} ms | {p99:.3f} ms |")


if __name__ == "__main__":
    main()
