"""Issue 13: what verifying a 100-skill index and installing 10 signed skills adds to a spawn.

One run builds a repository (a root delegating one signing key, an index of 100 skills with 3
versions each, every bundle signed) and a host trust store, then times, for --rounds rounds:

- ``index``: fetch and verify root.json and index.json against the pinned root and the trust
  store's memory (what every resolve does first);
- ``resolve 10``: SkillResolver.resolve of 10 skills (each ~60 KiB in 12 files) into a fresh
  staging directory: the index as above, then each bundle's digest, signature, manifest and every
  file, then the writes;
- the floor, ``copy 10``: shutil.copytree of the same 10 skill directories (an install that
  verifies nothing).

Prints Markdown for docs/PERFORMANCE.md (medians; the ratio to the floor from the same run).

    .venv/bin/python bench/skills_verify.py [--rounds 30]      (as root: the trust store is root's)
"""

import argparse
import os
import platform
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from colibri.adapters.skill_repo import DirectoryRepository
from colibri.adapters.skill_trust import TrustStore
from colibri.services.skills import publish, trusted
from colibri.services.skills.resolve import SkillRef, SkillResolver
from colibri.supply import keys

SKILLS = 100
VERSIONS = 3
INSTALL = 10


def skill(base: Path, name: str, version: str) -> Path:
    directory = base / f"{name}-{version}" / name
    (directory / "handlers").mkdir(parents=True)
    (directory / "reference").mkdir()
    (directory / "SKILL.md").write_text(f"# {name} {version}\n" + "Follow these steps carefully.\n" * 400)
    for n in range(5):
        handler = directory / "handlers" / f"cap{n}"
        handler.write_text("#!/bin/sh\n" + f"# handler {n}\n" * 300)
        handler.chmod(0o755)
    for n in range(6):
        (directory / "reference" / f"doc{n}.md").write_text(f"reference {n}\n" * 300)
    return directory


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=30)
    rounds = parser.parse_args().rounds
    now = datetime.now(UTC)
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        root_key, signer = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
        repo = DirectoryRepository(base / "repo")
        publish.delegate(repo, root_key, keys.raw_public(signer), now + timedelta(days=365))
        pairs = []
        sources: list[Path] = []
        for n in range(SKILLS):
            for v in range(VERSIONS):
                name, version = f"skill-{n:03d}", f"1.{v}.0"
                source = skill(base / "src", name, version)
                data, _ = publish.build(source, name, version, tuple(f"cap{i}" for i in range(5)))
                pairs.append((data, publish.sign(data, signer)[0]))
                if v == VERSIONS - 1 and n < INSTALL:
                    sources.append(source)
        publish.publish(repo, pairs, signer, now, now + timedelta(days=30))
        trust = TrustStore(base / "state" / "supply")
        trust.pin(keys.public_line(keys.raw_public(root_key)).encode())
        resolver = SkillResolver(repo, trust, lambda: now)
        refs = [SkillRef(f"skill-{n:03d}", None) for n in range(INSTALL)]
        index_size = (base / "repo/index.json").stat().st_size
        bundle_size = (base / "repo/bundles/skill-000-1.2.0.tar").stat().st_size

        timings: dict[str, list[float]] = {"index": [], "resolve": [], "copy": []}
        for r in range(rounds):
            begin = time.perf_counter()
            with trust.locked():
                trusted.current(repo, trust, now)
            timings["index"].append(time.perf_counter() - begin)

            staging = base / f"staging-{r}"
            staging.mkdir()
            begin = time.perf_counter()
            found = resolver.resolve(refs, tier="paid", other_tenants=["acme", "globex"], staging=staging)
            timings["resolve"].append(time.perf_counter() - begin)
            assert len(found) == INSTALL

            floor = base / f"floor-{r}"
            floor.mkdir()
            begin = time.perf_counter()
            for source in sources:
                shutil.copytree(source, floor / source.name)
            timings["copy"].append(time.perf_counter() - begin)
            shutil.rmtree(staging)
            shutil.rmtree(floor)

    med = {k: statistics.median(v) * 1000 for k, v in timings.items()}
    print(f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"{platform.system()} {platform.release()}; {rounds} rounds, medians.")  # fmt: skip
    print(f"Index: {SKILLS} skills x {VERSIONS} versions, index.json {index_size} bytes; "
          f"each bundle {bundle_size} bytes, 12 files.\n")  # fmt: skip
    print("| step | median (ms) | vs copy 10 |")
    print("|---|---:|---:|")
    print(
        f"| index: fetch + verify root.json and index.json | {med['index']:.1f} | {med['index'] / med['copy']:.1f}x |"
    )
    resolve = f"{med['resolve']:.1f} | {med['resolve'] / med['copy']:.1f}x"
    print(f"| resolve 10 (index + 10 bundles verified + written) | {resolve} |")
    print(f"| floor: copy 10 skill directories (no verification) | {med['copy']:.1f} | 1.0x |")
    print(f"\nAdded to a spawn by verification: {med['resolve'] - med['copy']:.1f} ms (target: at most 1000 ms).")


if __name__ == "__main__":
    main()
