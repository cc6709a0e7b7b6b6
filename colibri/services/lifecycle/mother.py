"""The mother skill inside the jail: started through rc.d, and ready only once it said so.

An agent is active only after the mother logged its ready line; a refusal fails with the mother's
own reason (MotherNotReady), and a refusing or silent mother is stopped so that it does not loop.
The waits use colibri.poll (the mother itself keeps its own loop, stdlib-only).
"""

import json
import re
from pathlib import Path

from colibri import __version__
from colibri.adapters import jailfs
from colibri.adapters.jail import JailBackend
from colibri.adapters.localhome import LocalHome
from colibri.adapters.runner import CommandResult
from colibri.errors import CommandFailed, CommandTimeout, InvalidInput, JailError, MotherNotReady
from colibri.poll import poll_until
from colibri.services.lifecycle.layout import HANDLERS_DIR, IDENTITY, JAIL_SOCKET_DIR, MOTHER, SKILL_DIR, SpawnPaths
from colibri.services.lifecycle.skills import MOTHER_SKILL, SKILLS_ROOT, SkillPlan
from colibri.services.lifecycle.skills import install as install_skills
from colibri.store.models import Tenant
from colibri.text import safe

MOTHER_READY = "ready: identity read and .env checked"
"""The line the mother logs once its identity is read and its .env checked (skills/mother)."""
MOTHER_REFUSED = "refusing to start: "
"""How every refusal line of the mother begins; the rest is its reason."""
MOTHER_READY_TIMEOUT = 15.0
"""How long spawn waits for the mother's ready line.  Without it the agent is not active: a
mother that refuses (bad .env, no identity) fails the step with its reason, and so does one that
says nothing in time (under daemon(8) -R its supervisor would only restart it, later)."""
MOTHER_LOG = "var/log/colibri_mother.log"
MOTHER_PIDFILE = "var/run/colibri_mother_child.pid"
"""The mother's own pid (daemon(8) -p on FreeBSD; the sandbox's rc.d script writes it too)."""
LOCAL_LOG = ".colibri/mother.log"
"""spawn-local's mother log, in the home."""
LOG_WINDOW = 1 << 20
"""How much of the mother log is read at most: its end (newsyslog rotates it only at 1024 KiB)."""

_MOTHER_LINE = re.compile(
    rb"^(?:mother\[(\d+)\]: )?("
    + re.escape(MOTHER_READY.encode())
    + rb"|"
    + re.escape(MOTHER_REFUSED.encode())
    + rb".*)$",
    re.M,
)
"""A ready or refusal line, ``mother[PID]: `` first (skills/mother logs so; a stand-in may not)."""


def install_mother(
    backend: JailBackend, paths: SpawnPaths, tenant: Tenant, *, secrets_expected: bool, plan: SkillPlan
) -> None:
    """The verified skills of the plan (the mother's included: its handlers from its own
    directory), and the tenant's identity, into the jail (no symlink in it followed); every
    capability of the tenant must have its handler in the skill that provides it (InvalidInput)."""
    name = tenant.jail_name
    root = backend.root(name)
    # Owned by the jail's root as the host sees it (a sandbox jail's root is not host root).
    owner = backend.user_ids(name, "root")
    for rel in ("var/log", "var/run"):  # an adopted jail may lack them
        with jailfs.open_dir(root, rel, create=True, owner=owner):
            pass
    install_skills(root, plan, owner)
    mother = next((w for w in plan.skills if w.record.name == MOTHER_SKILL), None)
    if mother is None:
        raise InvalidInput(f"tenant {tenant.tenant_id} has no mother skill in its plan")
    if mother.staged is not None and (mother.staged / "handlers").is_dir():  # the copy release-agent knows
        jailfs.copy_tree(mother.staged / "handlers", root, HANDLERS_DIR, owner=owner)
    caps = json.loads(tenant.capabilities or "[]")
    for cap in caps:
        provider = plan.provider(cap["name"]) or MOTHER_SKILL
        require_handler(
            root, cap["name"], paths.skills_dir / "mother" / "handlers", f"{SKILLS_ROOT}/{provider}/handlers"
        )
    env = f"/home/{paths.jail_user}/.env"
    handlers = f"{SKILL_DIR}/handlers"
    document = identity(tenant, paths.jail_user, caps, JAIL_SOCKET_DIR, env, handlers, secrets_expected, plan)
    jailfs.write_file(root, IDENTITY, document, mode=0o644, owner=owner, dir_owner=owner)


def identity(
    tenant: Tenant,
    user: str,
    caps: list[dict[str, str]],
    sock: str,
    env: str,
    handlers: str,
    secrets_expected: bool,
    plan: SkillPlan | None = None,
) -> bytes:
    """The identity the mother reads first (skills/mother): who it is, where its socket is, the
    skills installed for it (each one's directory, whose handlers/ provide its capabilities)."""
    document = {
        "tenant": tenant.tenant_id,
        "agent_id": f"{tenant.tenant_id}-1",
        "user": user,
        "capabilities": caps,
        "socket": f"{sock}/agent.sock",
        "env_file": env,
        "secrets_expected": secrets_expected,
        "handlers_dir": handlers,
        "mother_version": __version__,
        "skills": plan.identity_entries() if plan is not None else [],
    }
    return (json.dumps(document, indent=2, sort_keys=True) + "\n").encode()


def require_handler(root: Path, capability: str, shipped: Path, rel: str = HANDLERS_DIR) -> None:
    try:
        jailfs.read_file(root, f"{rel}/{capability}", limit=1)
    except JailError:
        raise InvalidInput(
            f"no handler for capability {capability}: add an executable named {capability} to {shipped}"
        ) from None


def start_mother(backend: JailBackend, name: str, *, since: int | None = None, restart: bool = False) -> str:
    """Make sure the jail's mother runs and has said it is ready; return what ``service status``
    says.  Idempotent: a mother already running and ready is left alone (rc.subr answers a
    second ``start`` with "already running?", exit 1, so status is asked first).

    ``since``: the mother log's size before the caller started the jail, whose rc started the
    mother at boot: its ready line must come after that.  Without it, a running mother counts as
    ready only when the log's last ready-or-refusal line is a ready line of its current pid;
    otherwise it is restarted.  ``restart``: a running mother is always started afresh (spawn
    has just rewritten its identity).  Raises MotherNotReady with the mother's own reason when it
    refuses, exits or stays silent (a refusing mother is stopped, so it does not loop)."""
    status = _service(backend, name, "status")
    if status.exit_code == 0 and restart:
        _service(backend, name, "stop")
    elif status.exit_code == 0:
        if since is not None:
            return _await_ready(backend, name, since, started=False)
        last = last_mother_line(_read_log(backend, name), 0)  # the log's end: its last such line
        if (
            last is not None
            and last[1] == MOTHER_READY
            and last[0] is not None
            and last[0] == _mother_pid(backend, name)
        ):
            return status.out.strip()
        _service(backend, name, "stop")  # running, but not known to be ready: start it afresh
    return _start(backend, name)


def mother_log_size(backend: JailBackend, name: str) -> int:
    """The mother log's size now: pass it to start_mother as ``since`` before starting the jail."""
    try:
        return jailfs.read_since(backend.root(name), MOTHER_LOG, 0, 0)[0]
    except JailError:
        return 0


def _start(backend: JailBackend, name: str) -> str:
    offset = mother_log_size(backend, name)
    result = _service(backend, name, "start")
    # rc.subr answers a start of a service that is not enabled with a notice and exit 0.
    if result.exit_code != 0 or result.out.startswith("Cannot 'start'"):
        said = _first_line(result.err) or _first_line(result.out) or f"exit {result.exit_code}"
        raise MotherNotReady(f"the mother skill did not start in jail {name}: {said}")
    return _await_ready(backend, name, offset, started=True)


def _await_ready(backend: JailBackend, name: str, offset: int, *, started: bool) -> str:
    def look() -> str | None:
        line = _mother_line_since(backend, name, offset)
        if line is not None and line[1].startswith(MOTHER_REFUSED):
            _service(backend, name, "stop")  # under daemon(8) -R it would only retry, and refuse again
            raise _refused(f"in jail {name}", line[1])
        status = _service(backend, name, "status")
        if status.exit_code == 0:
            return status.out.strip() if line is not None and line[1] == MOTHER_READY else None
        line = _mother_line_since(backend, name, offset)
        if line is not None and line[1].startswith(MOTHER_REFUSED):
            raise _refused(f"in jail {name}", line[1])
        if not started:  # the mother rc started at boot is gone: start it ourselves
            return _start(backend, name)
        raise MotherNotReady(f"the mother skill exited right after starting in jail {name}: {_log_tail(backend, name)}")

    said = poll_until(look, timeout=MOTHER_READY_TIMEOUT)
    if said is None:
        _service(backend, name, "stop")
        raise MotherNotReady(
            f"the mother skill in jail {name} did not say it was ready within {MOTHER_READY_TIMEOUT:g} s "
            f"(stopped again); its last log line: {_log_tail(backend, name)}"
        )
    return said


def _refused(where: str, line: str) -> MotherNotReady:
    where = f" {where}" if where else ""
    return MotherNotReady(f"the mother skill refused to start{where}: {line.removeprefix(MOTHER_REFUSED)}")


def _mother_line_since(backend: JailBackend, name: str, offset: int) -> tuple[int | None, str] | None:
    return last_mother_line(_log_since(backend.root(name), MOTHER_LOG, offset), 0)


def _log_since(root: Path, rel: str, offset: int) -> bytes:
    """What the log gained after ``offset`` (all of it when it is shorter: rotated), its last
    LOG_WINDOW bytes at most, from its first whole line then; b"" when there is no log."""
    try:
        size, data = jailfs.read_since(root, rel, offset, LOG_WINDOW)
    except JailError:
        return b""
    if size - (offset if offset <= size else 0) > LOG_WINDOW:  # cut: its first line may be a part
        data = data[data.find(b"\n") + 1 :] if b"\n" in data else b""
    return data


def start_local_mother(local: LocalHome, skill: Path) -> str:
    """spawn-local's mother, held to the same rule as a jail's: active only after its ready line
    (a running one only if that line is its own), a refusal fails with its reason."""

    def read(offset: int = 0) -> bytes:
        return _log_since(local.home, LOCAL_LOG, offset)

    running = local.pid()
    if running is not None:
        last = last_mother_line(read(), 0)
        if last is not None and last[1] == MOTHER_READY and last[0] == running:
            return f"pid {running}"
        local.stop()
    try:
        offset = jailfs.read_since(local.home, LOCAL_LOG, 0, 0)[0]
    except JailError:
        offset = 0
    pid = local.start(skill, local.state / "agent.json")

    def look() -> str | None:
        line = last_mother_line(read(offset), 0)
        if line is not None and line[1].startswith(MOTHER_REFUSED):
            local.stop()
            raise _refused("", line[1])
        alive = local.pid() == pid
        if not alive:
            raise MotherNotReady(f"the mother skill exited right after starting (see {local.state / 'mother.log'})")
        return f"pid {pid}" if line is not None and line[1] == MOTHER_READY else None

    said = poll_until(look, timeout=MOTHER_READY_TIMEOUT)
    if said is None:
        local.stop()
        raise MotherNotReady(
            f"the mother skill did not say it was ready within {MOTHER_READY_TIMEOUT:g} s (stopped again; "
            f"see {local.state / 'mother.log'})"
        )
    return said


def _service(backend: JailBackend, name: str, verb: str) -> CommandResult:
    """``service colibri_mother VERB`` in the jail.  The jail's rc.d script is the tenant's: one
    that floods its output or hangs is a mother that is not ready (MotherNotReady, the reason
    bounded and escaped), not an error of colibri's."""
    try:
        return backend.exec(name, backend.service_argv(MOTHER, verb), timeout=30)
    except (CommandFailed, CommandTimeout) as exc:
        raise MotherNotReady(f"'service {MOTHER} {verb}' in jail {name} failed: {safe(str(exc)[:300])}") from None


def last_mother_line(log: bytes, offset: int) -> tuple[int | None, str] | None:
    """(pid, text) of the last ready or refusal line of the log after ``offset``."""
    found = None
    for match in _MOTHER_LINE.finditer(log, offset):
        found = match
    if found is None:
        return None
    pid = int(found.group(1)) if found.group(1) else None
    return pid, found.group(2).decode("utf-8", "replace")[:300]


def _mother_pid(backend: JailBackend, name: str) -> int | None:
    try:
        text = jailfs.read_file(backend.root(name), MOTHER_PIDFILE, limit=64).decode("ascii", "replace")
    except JailError:
        return None
    word = text.split()[0] if text.split() else ""
    return int(word) if word.isdigit() else None


def _first_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[0][:300] if lines else ""


def _read_log(backend: JailBackend, name: str) -> bytes:
    return _log_since(backend.root(name), MOTHER_LOG, 0)


def _log_tail(backend: JailBackend, name: str) -> str:
    try:
        data = jailfs.read_tail(backend.root(name), MOTHER_LOG, 1 << 16)
    except JailError:
        return "no log"
    lines = [ln for ln in data.decode("utf-8", "replace").splitlines() if ln.strip()]
    return lines[-1][:300] if lines else "no log"
