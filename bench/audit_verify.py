"""Issue 12: ``audit verify`` over 1,000,000 entries offline, against a plain SHA-256 chain.

Builds a bundle as ``audit export`` writes it (one host, entries made by colibri.audit.entry.body,
a signed checkpoint every 256 entries as the daemon signs under load, the export statement), then
times ``colibri.audit.verify.verify`` on it (in this process; best of --runs) against the floor of
hashing the same lines as a bare SHA-256 chain.  Prints Markdown for docs/PERFORMANCE.md.

    .venv/bin/python bench/audit_verify.py [--entries 1000000] [--every 256] [--runs 3]
"""

import argparse
import base64
import hashlib
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from colibri.audit import note
from colibri.audit.entry import GENESIS, Event, body, leaf_hash
from colibri.audit.merkle import CompactRange
from colibri.audit.verify import verify

HOST = "osa"


def build(path: Path, count: int, every: int) -> note.PublicKey:
    private = Ed25519PrivateKey.generate()
    raw = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    key = note.PublicKey(note.key_name(HOST), raw)
    tree = CompactRange()
    prev = GENESIS
    lines: list[bytes] = []
    notes: list[str] = []
    start = 1_780_000_000.0
    for seq in range(1, count + 1):
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(start + seq // 100)) + f".{seq % 1_000_000:06d}Z"
        event = Event(
            "task.complete",
            f"task:{seq}",
            tenant=f"t{seq % 50}",
            detail={"agent": f"a{seq % 97}", "capability": "code", "attempt": 1},
        )
        encoded = body(seq, ts, HOST, f"agent:t{seq % 50}/a{seq % 97}", event, prev)
        prev = leaf_hash(encoded)
        tree.append(bytes.fromhex(prev))
        lines.append(encoded)
        if seq % every == 0 or seq == count:
            checkpoint = note.Checkpoint(HOST, seq, tree.root(), ts)
            notes.append(note.sign(checkpoint, key, private.sign))
    now = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
    heads = {HOST: (count, tree.root().hex())}
    statement = base64.b64encode(private.sign(note.export_message(HOST, now, heads))).decode()
    with path.open("wb") as out:
        out.write(
            json.dumps(
                {"t": "bundle", "format": "colibri-audit", "version": 1, "host": HOST, "time": now},
                separators=(",", ":"),
            ).encode()
            + b"\n"
        )
        out.write(
            json.dumps(
                {"t": "key", "host": HOST, "key": key.vkey, "created_at": now, "retired_at": None, "endorsement": None},
                separators=(",", ":"),
            ).encode()
            + b"\n"
        )
        for text in notes:
            out.write(json.dumps({"t": "checkpoint", "note": text}, separators=(",", ":")).encode() + b"\n")
        out.write(b"\n".join(lines) + b"\n")
        out.write(
            json.dumps(
                {
                    "t": "export",
                    "host": HOST,
                    "time": now,
                    "heads": {HOST: list(heads[HOST])},
                    "key_id": key.key_id,
                    "signature": statement,
                },
                separators=(",", ":"),
            ).encode()
            + b"\n"
        )
    return key


def chain_floor(path: Path) -> float:
    """A bare SHA-256 chain over the entry lines (what the issue's 1.7 s measured)."""
    begin = time.perf_counter()
    prev = b""
    with path.open("rb") as handle:
        for line in handle:
            if line.startswith(b'{"action"'):
                prev = hashlib.sha256(prev + line).digest()
    return time.perf_counter() - begin


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--every", type=int, default=256)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="colibri-bench-") as tmp:
        path = Path(tmp) / "bundle.jsonl"
        began = time.perf_counter()
        key = build(path, args.entries, args.every)
        built = time.perf_counter() - began
        size = path.stat().st_size
        timings, floors = [], []
        for _ in range(args.runs):
            begin = time.perf_counter()
            report = verify(path, [key])
            timings.append(time.perf_counter() - begin)
            floors.append(chain_floor(path))
        host = report.hosts[HOST]
        assert host.entries == args.entries and host.unsigned == 0
    best, floor = min(timings), min(floors)
    load = os.getloadavg()
    print(f"### `audit verify` over {args.entries:,} entries (`bench/audit_verify.py`)\n")
    print(
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
        f"load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} at the end."
    )
    print(
        f"Bundle: {size / 1e6:.0f} MB, {host.checkpoints:,} signed checkpoints (one every {args.every}), "
        f"built in {built:.0f} s.\n"
    )
    print(f"| what | best of {args.runs} | all runs (s) |")
    print("|---|---|---|")
    print(
        f"| `verify` (chain + Merkle root at every checkpoint + {host.checkpoints:,} Ed25519 verifications) "
        f"| **{best:.2f} s** | {', '.join(f'{t:.2f}' for t in timings)} |"
    )
    runs = ", ".join(f"{t:.2f}" for t in floors)
    print(f"| floor: a bare SHA-256 chain over the same lines | {floor:.2f} s | {runs} |")
    print(f"\nRatio verify / floor: {best / floor:.2f}. Target < 5 s: {'met' if best < 5 else 'MISSED'}.")


if __name__ == "__main__":
    main()
