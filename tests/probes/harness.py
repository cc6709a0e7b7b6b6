# ruff: noqa
# Reviewer probe (issue 8 review): not a test; run by hand as root, see the review report.
"""Reviewer probe harness: two real sandbox jails (iso/iso2) in a temp dir; run scripts in them."""

import json, os, random, shutil, subprocess, sys, tempfile
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))  # the repository
from colibri.adapters.jail import UID_BLOCK, JailIds
from colibri.adapters.runner import ShRunner
from colibri.adapters.sandbox.backend import Sandbox
from colibri.adapters.sandbox.cgroups import Limits
from colibri.resources import shipped

STATE = Path("/tmp/rev_jails.json")


def sandbox(tmp: Path) -> Sandbox:
    return Sandbox(
        tmp / "jails",
        shipped("jails"),
        "agent",
        ShRunner({"PATH": os.environ["PATH"]}),
        limits=Limits(memory_mib=64, max_processes=40, cpu_percent=50),
        open_files=256,
    )


def up() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="rev-"))
    sb = sandbox(tmp)
    first = random.randrange(1000, 8000)
    for name, base in (("iso", 1_000_000_000 + first * UID_BLOCK), ("iso2", 1_000_000_000 + (first + 1) * UID_BLOCK)):
        sb.create(name, ip=None, template="colibri/agent", ids=JailIds(base))
        sb.start(name)
        env = sb.root(name) / "home/agent/.env"
        env.write_text(f"SECRET=of-{name}\n")
        env.chmod(0o600)
        os.chown(env, *sb.user_ids(name, "agent"))
    STATE.write_text(json.dumps({"tmp": str(tmp)}))
    print(tmp)


def get() -> Sandbox:
    return sandbox(Path(json.loads(STATE.read_text())["tmp"]))


def down() -> None:
    sb = get()
    for name in ("iso", "iso2"):
        try:
            sb.destroy(name)
        except Exception as exc:
            print("destroy", name, exc)
    shutil.rmtree(json.loads(STATE.read_text())["tmp"], ignore_errors=True)
    STATE.unlink()


def run(name: str, user: str, script: str, timeout: float = 30) -> None:
    sb = get()
    r = sb.exec(
        name, ["/bin/sh", "-c", "{ " + script + "\n} 2>&1"], user=None if user == "root" else user, timeout=timeout
    )
    sys.stdout.write(r.out)
    sys.stdout.write(r.err)
    print(f"[exit {r.exit_code}]")


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "up":
        up()
    elif cmd == "down":
        down()
    elif cmd == "run":
        run(
            sys.argv[2],
            sys.argv[3],
            sys.stdin.read() if sys.argv[4] == "-" else sys.argv[4],
            float(sys.argv[5]) if len(sys.argv) > 5 else 30,
        )
