"""Issue 13: what a 100-skill index and 10 installed skills add to a real ``spawn-agent``.

One run builds a signed repository (a root delegating one signing key; the real mother and 100
skills of 12 files each, bench/skills_verify.py's shape, in an index of 100 x 3 versions plus
the mother) and pins its root in a private trust store, then spawns one tenant on the sandbox
backend (the real mother, no daemon: spawn waits for its ready line), destroys it, and again,
alternating for --rounds rounds:

- ``builtin``: no repository configured (colibri's shipped mother, bundled on the host);
- ``mother``: the repository configured, the signed mother only (the index fetched and verified);
- ``mother + 10``: the same with ``--skill skill-000 ... --skill skill-009``: each bundle verified,
  staged and copied into the jail, recorded.

Prints Markdown for docs/PERFORMANCE.md: the medians, and what each adds to the builtin spawn.

    .venv/bin/python bench/skills_install.py [--rounds 3]     (root, bubblewrap, Linux)
"""

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.skills_verify import INSTALL, SKILLS, VERSIONS, skill
from colibri.adapters.skill_repo import DirectoryRepository
from colibri.adapters.skill_trust import TrustStore
from colibri.services.skills import publish
from colibri.supply import keys

REPO = Path(__file__).resolve().parent.parent


def build_repo(base: Path) -> Path:
    now = datetime.now(UTC)
    root_key, signer = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    repo = DirectoryRepository(base / "repo")
    publish.delegate(repo, root_key, keys.raw_public(signer), now + timedelta(days=365))
    mother = base / "src" / "mother"
    shutil.copytree(REPO / "skills" / "mother", mother, ignore=shutil.ignore_patterns("__pycache__"))
    data, _ = publish.build(mother, "mother", "1.0.0", ("echo", "sleep"))
    pairs = [(data, publish.sign(data, signer)[0])]
    for n in range(SKILLS):
        for v in range(VERSIONS):
            name, version = f"skill-{n:03d}", f"1.{v}.0"
            data, _ = publish.build(
                skill(base / "src", name, version), name, version, tuple(f"cap{i}" for i in range(5))
            )
            pairs.append((data, publish.sign(data, signer)[0]))
    publish.publish(repo, pairs, signer, now, now + timedelta(days=30))
    TrustStore(base / "state" / "supply").pin(keys.public_line(keys.raw_public(root_key)).encode())
    return base / "repo"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    rounds = parser.parse_args().rounds
    if os.geteuid() != 0 or shutil.which("bwrap") is None:
        raise SystemExit("skills_install.py needs root and bubblewrap (the sandbox backend)")
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        repo = build_repo(base)
        (base / "colibri.toml").write_text("")
        os.environ.update({
            "COLIBRI_CONFIG": str(base / "colibri.toml"), "COLIBRI_STATE_DIR": str(base / "state"),
            "COLIBRI_RUN_DIR": str(base / "run"), "COLIBRI_LOG_DIR": str(base / "log"),
            "COLIBRI_JAIL_BACKEND": "sandbox", "COLIBRI_HOST": "bench",
        })  # fmt: skip
        from colibri.cli.app import run

        def colibri(*args: str) -> None:
            code = run(list(args))
            if code != 0:
                raise SystemExit(f"colibri {' '.join(args)}: exit {code}")

        for tenant in ("plain", "signed", "ten"):  # one each: a tenant's recorded set is what its next spawn installs
            colibri("register-tenant", tenant, "--collection", "")
        extra = [a for n in range(INSTALL) for a in ("--skill", f"skill-{n:03d}")]
        kinds = {
            "builtin": ("plain", None, []),
            "mother": ("signed", str(repo), []),
            "mother + 10": ("ten", str(repo), extra),
        }
        timings: dict[str, list[float]] = {k: [] for k in kinds}
        for _ in range(rounds):
            for kind, (tenant, location, args) in kinds.items():
                if location is None:
                    os.environ.pop("COLIBRI_SKILLS_REPOSITORY", None)
                else:
                    os.environ["COLIBRI_SKILLS_REPOSITORY"] = location
                begin = time.perf_counter()
                colibri("spawn-agent", tenant, *args)
                timings[kind].append(time.perf_counter() - begin)
                colibri("destroy-agent", tenant, "--yes")
    med = {k: statistics.median(v) * 1000 for k, v in timings.items()}
    load = os.getloadavg()[0]
    print(f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"{platform.system()} {platform.release()}; load {load:.1f}; {rounds} rounds, medians, "
          "stdout of the spawns above.")  # fmt: skip
    print("\n| spawn-agent (sandbox, real mother) | median (ms) | added to builtin (ms) | ratio |")
    print("|---|---:|---:|---:|")
    for kind in kinds:
        print(f"| {kind} | {med[kind]:.0f} | {med[kind] - med['builtin']:.0f} | {med[kind] / med['builtin']:.2f}x |")
    added = med["mother + 10"] - med["builtin"]
    print(
        f"\nA 100-skill index verified and 10 skills installed add {added:.0f} ms to a spawn (target: at most 1000 ms)."
    )


if __name__ == "__main__":
    main()
