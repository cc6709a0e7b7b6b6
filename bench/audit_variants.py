"""Issue 12: where the audit's share of submit -> claimed goes, by taking its parts away one at a time.

Fresh sets of daemons (bench/heartbeats.py's, 100 tenants, SQLite), all alive at once, their
submit -> claimed cycles taking turns in an order that rotates (``turn``); each daemon a variant
made by a ``sitecustomize`` of this run (bench-only: no product setting turns any of this off):

- ``on``: the audit as it is; ``off``: ``append_many`` writes nothing (bench/audit_hot_paths.py's);
- ``sqlonly``: the append's statements as they are, its Python (time, body, leaf hash, MAC)
  replaced by constants;
- ``noinsert``: as ``sqlonly`` without the entry's INSERT (the head row still swapped);
- ``noidx``, ``nots``, ``notenant``: the audit as it is on a store without both of the entry
  table's secondary indexes, without ``ix_audit_entries_ts``, without ``ix_audit_entries_tenant``
  (since migration 0011 the table has neither: these three are ``on``);
- ``noswap``: the remembered head's swap not sent, as if it always matched (an upper bound only);
- ``worowid``: the entries a WITHOUT ROWID table (SQLite: the key is the table);
- ``at:DIR``: a daemon running the colibri of the checkout DIR (an A/B of a change in one run);
  ``atoff:DIR``: the same with the audit off (with both, DIR's own on / off is printed too).

Per set, each variant's p50 over the off daemon's; printed: every set, the median of the sets and
the p50 ratio over every cycle (a set's ratios move with its processes: read the median).

    .venv/bin/python bench/audit_variants.py [--sets 6] [--cycles 300] on off sqlonly noinsert noidx
"""

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import heartbeats as hb
from audit_hot_paths import OFF

SQL_ONLY = """
import colibri.store.audit as _a

_BODY = '{"action":"task.claim","actor":"agent:t000x/router","detail":{"agent":"t000x/router","fence":1},' \\
    '"host":"bench","outcome":"ok","prev":"' + "0" * 64 + '","seq":1,"subject":"task:1","tenant":"t000x",' \\
    '"ts":"2026-12-02T13:00:00.000000Z","v":1}'

def _rows(where, events, ts, key, seq, prev):  # the rows the append writes, of constants
    rows, seqs = [], []
    for event in events:
        seq += 1
        rows.append((where.host, seq, ts, event.tenant, event.action, _BODY, "%064x" % seq, "1" * 64))
        seqs.append(seq)
    return rows, seqs, "%064x" % seq

_a._rows = _rows
_a.timestamp = lambda now=None: "2026-12-02T13:00:00.000000Z"
"""
NO_INSERT = """
def _finish(cursor, statements, rows, seen, seq, leaf):  # the head swapped, no entry written
    cursor.close()
    _a._SEEN[seen] = (seq, leaf)

_a._finish = _finish
"""


NO_SWAP = """
import colibri.store.audit as _a

class _Trusting:  # the remembered head's swap not sent: as if it always matched (an upper bound only)
    def __init__(self, cursor):
        self._cursor, self.rowcount = cursor, 1
    def execute(self, sql, params=()):
        if sql.startswith("UPDATE audit_heads SET seq = ") and "AND leaf" in sql:
            self.rowcount = 1
            return self
        self._cursor.execute(sql, params)
        self.rowcount = self._cursor.rowcount
        return self
    def __getattr__(self, name):
        return getattr(self._cursor, name)

_append = _a.AuditRepo.__dict__["_append"].__func__

class _Raw:
    def __init__(self, raw):
        self._raw = raw
    def cursor(self):
        return _Trusting(self._raw.cursor())

_a.AuditRepo._append = staticmethod(lambda raw, *rest: _append(_Raw(raw), *rest))
"""
WITHOUT_ROWID = """
import os, sqlite3
_c = sqlite3.connect(os.environ["COLIBRI_STATE_DIR"] + "/colibri.db")
_c.executescript(\"""
BEGIN;
CREATE TABLE audit_entries_w (host VARCHAR(64) NOT NULL, seq BIGINT NOT NULL, ts VARCHAR(32) NOT NULL,
    tenant VARCHAR(64), action VARCHAR(64) NOT NULL, body TEXT NOT NULL, leaf VARCHAR(64) NOT NULL,
    mac VARCHAR(64), PRIMARY KEY (host, seq)) WITHOUT ROWID;
INSERT INTO audit_entries_w SELECT host, seq, ts, tenant, action, body, leaf, mac FROM audit_entries;
DROP TABLE audit_entries;
ALTER TABLE audit_entries_w RENAME TO audit_entries;
COMMIT;
\""")
_c.close()
"""


def dropping(*indexes: str) -> str:
    drops = "".join(f'_c.execute("DROP INDEX IF EXISTS {name}")\n' for name in indexes)
    opened = 'import os, sqlite3\n_c = sqlite3.connect(os.environ["COLIBRI_STATE_DIR"] + "/colibri.db")\n'
    return f"{opened}{drops}_c.commit()\n_c.close()\n"


VARIANTS = {
    "on": "",
    "off": OFF,
    "sqlonly": SQL_ONLY,
    "noinsert": SQL_ONLY + NO_INSERT,
    "noidx": dropping("ix_audit_entries_tenant", "ix_audit_entries_ts"),
    "nots": dropping("ix_audit_entries_ts"),
    "notenant": dropping("ix_audit_entries_tenant"),
    "noswap": NO_SWAP,
    "worowid": WITHOUT_ROWID,
}


def started(code: str, folder: Path) -> hb.Daemon:
    saved = os.environ.get("PYTHONPATH")
    if code.startswith("at:"):  # another checkout's colibri (an A/B of a change in one run)
        os.environ["PYTHONPATH"] = str(Path(code[3:]).resolve())
    elif code.startswith("atoff:"):  # that checkout's colibri with the audit off (its own ratio's base)
        folder.mkdir()
        (folder / "sitecustomize.py").write_text(OFF)
        os.environ["PYTHONPATH"] = f"{folder}:{Path(code[6:]).resolve()}"
    elif code:
        folder.mkdir()
        (folder / "sitecustomize.py").write_text(code)
        os.environ["PYTHONPATH"] = str(folder)
    try:
        return hb.Daemon(100)
    finally:
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved


def turn(names: list[str], n: int) -> list[str]:
    """The order of cycle ``n``: rotated by one each cycle, and reversed every other round, so each
    daemon takes each place (first, between two, last) as often as the others.  Reversing alone,
    with three daemons, kept the middle one between two every cycle: its CPU time a cycle came
    out 3-5% above the same code's at an end, whichever code it was (session 11)."""
    k = len(names)
    order = names[n % k :] + names[: n % k]
    return order[::-1] if (n // k) % 2 else order


async def one_set(names: list[str], cycles: int, scratch: Path) -> dict[str, list[float]]:
    daemons = {name: started(VARIANTS[name], scratch / name) for name in names}
    try:
        for daemon in daemons.values():
            await daemon.ready()
        routers = {name: await hb.Router(daemon).open() for name, daemon in daemons.items()}
        for _ in range(20):  # warm each
            for router in routers.values():
                await router.cycle()
        samples: dict[str, list[float]] = {name: [] for name in names}
        for n in range(cycles):
            for name in turn(names, n):
                samples[name].append(await routers[name].cycle())
        for router in routers.values():
            router.close()
        return samples
    finally:
        for daemon in daemons.values():
            daemon.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sets", type=int, default=6)
    parser.add_argument("--cycles", type=int, default=300)
    parser.add_argument("variants", nargs="*", default=["on", "off", "sqlonly", "noinsert", "noidx"])
    args = parser.parse_args()
    names = list(dict.fromkeys(["off", *args.variants]))
    for name in names:
        if name.startswith(("at:", "atoff:")):
            VARIANTS[name] = name
    unknown = [name for name in names if name not in VARIANTS]
    if unknown:
        parser.error(f"no such variant: {', '.join(unknown)} (known: {', '.join(VARIANTS)})")
    ratios: dict[str, list[float]] = {name: [] for name in names}
    every: dict[str, list[float]] = {name: [] for name in names}
    print(f"| set | {' | '.join(names)} |\n|---|{'---:|' * len(names)}")
    for n in range(args.sets):
        with tempfile.TemporaryDirectory(prefix="colibri-bench-variants-") as scratch:
            samples = await one_set(names, args.cycles, Path(scratch))
        base = hb.pct(samples["off"], 0.5)
        for name in names:
            ratios[name].append(hb.pct(samples[name], 0.5) / base)
            every[name] += samples[name]
        print(f"| {n + 1} | {' | '.join(f'{ratios[name][-1]:.3f}' for name in names)} |", flush=True)
    base = hb.pct(every["off"], 0.5)
    print(f"| median of sets | {' | '.join(f'**{statistics.median(ratios[name]):.3f}**' for name in names)} |")
    print(f"| every cycle | {' | '.join(f'{hb.pct(every[name], 0.5) / base:.3f}' for name in names)} |")
    for name in names:  # another checkout's own ratio: its audit on over its audit off, set by set
        if name.startswith("at:") and (off := f"atoff:{name[3:]}") in names:
            own = [a / b for a, b in zip(ratios[name], ratios[off], strict=True)]
            whole = hb.pct(every[name], 0.5) / hb.pct(every[off], 0.5)
            print(f"{name} over {off}: median of sets **{statistics.median(own):.3f}**, every cycle {whole:.3f}")


if __name__ == "__main__":
    asyncio.run(main())
