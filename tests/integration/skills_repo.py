"""A signed first-party skills repository built with colibri's own commands (issue 13), for the
spawn tests: root and signing keys, the real mother (skills/mother), a ``mail`` skill (capability
``mail.send``), and a reviewed community bundle ``webtool`` that is not in the index."""

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import REPO


@dataclass(frozen=True)
class SignedRepo:
    base: Path
    repo: Path
    root_pub: Path
    webtool: Path  # a community bundle (not published): `colibri skills allow` takes it

    def copy(self, to: Path) -> Path:
        """A copy of the repository to damage in one test only."""
        shutil.copytree(self.repo, to)
        return to


def colibri(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "colibri", *args], env=env, capture_output=True, text=True, cwd=REPO,
        check=False, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, f"{args}: rc {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


def build_signed_repo(base: Path) -> SignedRepo:
    """keygen, delegate, build, sign, publish: the runbook's commands (runbooks/skills.md)."""
    base.mkdir(parents=True, exist_ok=True)
    (base / "colibri.toml").write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COLIBRI_", "BW_"))}
    env |= {"COLIBRI_CONFIG": str(base / "colibri.toml"), "COLIBRI_STATE_DIR": str(base / "signer-state"),
            "COLIBRI_RUN_DIR": str(base / "signer-run"), "COLIBRI_LOG_DIR": str(base / "signer-log")}  # fmt: skip
    keys, repo = base / "keys", base / "repo"
    keys.mkdir(mode=0o700)
    colibri(env, "skills", "keygen", str(keys / "root.key"))
    colibri(env, "skills", "keygen", str(keys / "signing.key"))
    colibri(env, "skills", "delegate", str(keys / "signing.key.pub"), "--repo", str(repo), "--root-key",
            str(keys / "root.key"), "--days", "365")  # fmt: skip
    src = base / "src"
    shutil.copytree(REPO / "skills" / "mother", src / "mother", ignore=shutil.ignore_patterns("__pycache__"))
    mail = src / "mail"
    (mail / "handlers").mkdir(parents=True)
    (mail / "SKILL.md").write_text("# mail\nAnswer the tenant's mail tasks.\n")
    (mail / "handlers/mail.send").write_text("#!/bin/sh\nprintf '{\"sent\": true}\\n'\n")
    (mail / "handlers/mail.send").chmod(0o755)
    web = src / "webtool"
    (web / "handlers").mkdir(parents=True)
    (web / "SKILL.md").write_text("# webtool\nA community skill.\n")
    (web / "handlers/web.fetch").write_text("#!/bin/sh\ncat\n")
    (web / "handlers/web.fetch").chmod(0o755)
    out = base / "bundles"
    out.mkdir()
    built = []
    for name, caps in (("mother", ("echo", "sleep")), ("mail", ("mail.send",)), ("webtool", ("web.fetch",))):
        args = ["skills", "build", str(src / name), "--version", "1.0.0"]
        args += [a for cap in caps for a in ("--capability", cap)]
        done = subprocess.run(
            [sys.executable, "-m", "colibri", *args, "--json"], env=env, capture_output=True, text=True,
            cwd=out, check=False, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        bundle = out / f"{name}-1.0.0.tar"
        assert bundle.is_file(), json.loads(done.stdout)
        built.append(bundle)
    for bundle in built[:2]:
        colibri(env, "skills", "sign", str(bundle), "--key", str(keys / "signing.key"))
        colibri(env, "skills", "publish", str(bundle), "--repo", str(repo), "--key", str(keys / "signing.key"))
    return SignedRepo(base, repo, keys / "root.key.pub", built[2])
