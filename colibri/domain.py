"""Pure value types and rules: tenant ids, capabilities, tenant states.  No I/O here."""

import enum
import re

from colibri.errors import InvalidInput, InvalidTenantId, StateConflict

TENANT_ID_MAX = 32
"""Why 32: the tenant id names the jail, the Vaultwarden collection and the agent's Unix socket
path.  FreeBSD's sun_path holds 104 bytes and the socket lives at
``/var/run/colibri/agents/<tenant>/agent.sock`` (35 bytes without the id); ZFS dataset paths,
``jls`` columns and DNS labels (63) all stay comfortable at 32.  Bastille itself has no limit."""

JAIL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*", re.ASCII)
"""Bastille's validate_name charset (reference §2.2): the tenant id's, and the bastille backend's
exact-target check."""
_ALL_DIGITS = re.compile(r"[0-9]+", re.ASCII)
_RESERVED = re.compile(r"[aA][lL][lL]", re.ASCII)


def validate_tenant_id(value: str) -> str:
    """Return ``value`` if it is a safe tenant id (== Bastille jail name == collection name).

    Bastille's own rule (reference §2.2 validate_name) is ``^[A-Za-z0-9][A-Za-z0-9_-]*$`` and not
    all digits; colibri also refuses ``ALL``/``all`` (Bastille's every-jail target, §1.7) and caps
    the length.  Raises InvalidTenantId with a one-line reason.
    """
    shown = _printable(value)
    if not value:
        raise InvalidTenantId("invalid tenant id: it is empty")
    if len(value) > TENANT_ID_MAX:
        raise InvalidTenantId(f"invalid tenant id {shown}: longer than {TENANT_ID_MAX} characters ({len(value)})")
    if not JAIL_NAME.fullmatch(value):
        raise InvalidTenantId(
            f"invalid tenant id {shown}: use ASCII letters, digits, '-' and '_', starting with a letter or digit"
        )
    if _ALL_DIGITS.fullmatch(value):
        raise InvalidTenantId(f"invalid tenant id {shown}: all digits would be read as a jail id (JID)")
    if _RESERVED.fullmatch(value):
        raise InvalidTenantId(f"invalid tenant id {shown}: reserved, bastille reads it as every jail")
    return value


_HOST_NAME = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*",
    re.ASCII,
)
COLLECTION_MAX = 255


def validate_host_name(value: str) -> str:
    """Return ``value`` if it is a host name (RFC 1123 labels, at most 253 characters): a tenant's
    host is shown to operators and, with many hosts, names an SSH target.  Raises InvalidInput."""
    if not _HOST_NAME.fullmatch(value):
        raise InvalidInput(f"invalid host {_printable(value)}: use a host name such as osa or osa.example.org")
    return value


def validate_collection_name(value: str) -> str:
    """Return ``value`` if it can name a Vaultwarden collection: printable, at most 255 characters
    (the store's column), no control or format character.  Raises InvalidInput."""
    if len(value) > COLLECTION_MAX:
        raise InvalidInput(f"invalid collection {_printable(value)}: longer than {COLLECTION_MAX} characters")
    if not value.isprintable():
        raise InvalidInput(f"invalid collection {_printable(value)}: control or format characters")
    return value


def prefix_clash(new_id: str, existing: list[str]) -> str | None:
    """Return an existing id that Bastille could confuse with ``new_id`` by prefix autocomplete.

    Bastille resolves an unknown target by ``grep -E "^TARGET"`` (reference §1.7 step 5), so while
    one of two jails is missing, ``agent`` selects ``agent1``.  colibri checks exact names before
    every call anyway; refusing prefix pairs at registration keeps operators' own bastille calls
    safe too.
    """
    for other in existing:
        if other != new_id and (other.startswith(new_id) or new_id.startswith(other)):
            return other
    return None


def _printable(value: str) -> str:
    """Show a rejected value safely: escaped, and cut to 40 characters."""
    text = value.encode("unicode_escape").decode("ascii")
    return repr(text[:40] + ("..." if len(text) > 40 else ""))


NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", re.ASCII)
"""An agent id, capability or lane name: 1-64 ASCII letters, digits, '_', '.', '-', starting with a
letter or digit (so no '..', no '/', nothing that reads as an option): safe as a handler's file name."""
CAPABILITY_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,31}", re.ASCII)
MAX_CAPABILITIES = 64

Capability = dict[str, str]
"""``{"name": ..., "version": ...}``, as the store, the identity file and the API carry it."""


def validate_name(value: object, what: str) -> str:
    """An agent id, capability or lane name (``NAME``).  Raises InvalidInput naming ``what``."""
    if not isinstance(value, str) or not NAME.fullmatch(value):
        shown = repr(value)[:50]
        raise InvalidInput(f"invalid {what} {shown}: use 1-64 ASCII letters, digits, '_', '.', '-'")
    return value


def capability(name: object, version: object) -> Capability:
    """One capability, by the one rule the CLI (``--capability``), the API (``register``) and
    docs/openapi.yaml share: a NAME, and a version of letters, digits and ``_.+-`` (semver's build
    ``+`` included) starting with a letter or digit.  Raises InvalidInput."""
    name = validate_name(name, "capability name")
    if not isinstance(version, str) or not CAPABILITY_VERSION.fullmatch(version):
        raise InvalidInput(f"invalid version for capability {name}")
    return {"name": name, "version": version}


def capabilities_from_specs(values: list[str]) -> list[Capability]:
    """``--capability NAME[@VERSION]`` values (version 1 when not given); a name given again takes
    its last version (a repeated option is not an error)."""
    parsed: dict[str, Capability] = {}
    for value in values:
        name, at, version = value.partition("@")
        try:
            parsed[name] = capability(name, version if at else "1")
        except InvalidInput:
            raise InvalidInput(
                f"invalid capability {_printable(value)}: use NAME or NAME@VERSION (ASCII letters, digits, "
                "'.', '_', '-'; a VERSION may also hold '+')"
            ) from None
    return list(parsed.values())


def capabilities_from_objects(value: object) -> list[Capability]:
    """An agent's ``[{"name": "echo", "version": "1"}, ...]`` (version 0 when not given), at most
    MAX_CAPABILITIES, names unique (what an agent sends twice is refused).  Raises InvalidInput."""
    if not isinstance(value, list) or len(value) > MAX_CAPABILITIES:
        raise InvalidInput(f"capabilities must be a list of at most {MAX_CAPABILITIES} objects")
    seen: dict[str, Capability] = {}
    for item in value:
        if not isinstance(item, dict):
            raise InvalidInput('each capability is an object {"name": ..., "version": ...}')
        parsed = capability(item.get("name"), item.get("version", "0"))
        if parsed["name"] in seen:
            raise InvalidInput(f"capability {parsed['name']} is listed twice")
        seen[parsed["name"]] = parsed
    return list(seen.values())


class Tier(enum.StrEnum):
    """A tenant's supply-chain tier (issue 13): which skills may enter its jail.

    ``paid`` (the default, fail-safe): only first-party skills, signed and pinned in the operator's
    repository.  ``community``: also skills the operator allowed explicitly (pinned by digest), at
    the operator's own risk.  A tenant is never widened silently: only ``colibri set-tier`` changes it.
    """

    PAID = "paid"
    COMMUNITY = "community"


DEFAULT_TIER = Tier.PAID
FIRST_PARTY_SOURCES = frozenset({"first-party", "builtin"})
"""Installed-skill sources a paid tenant may hold: the repository's first-party skills, and
colibri's shipped mother when no repository is configured (the development default)."""


class TenantStatus(enum.StrEnum):
    """The tenant's lifecycle.

    registered → spawning → active | failed;  failed → spawning (retry);  active ⇄ stopped;
    active | stopped | failed → spawning (converge again);  active | stopped | failed → registered
    (its jail destroyed);  registered | stopped | failed → removed;  removed → registered.
    """

    REGISTERED = "registered"
    SPAWNING = "spawning"
    ACTIVE = "active"
    FAILED = "failed"
    STOPPED = "stopped"
    REMOVED = "removed"


_TRANSITIONS: dict[TenantStatus, frozenset[TenantStatus]] = {
    TenantStatus.REGISTERED: frozenset({TenantStatus.SPAWNING, TenantStatus.REMOVED}),
    TenantStatus.SPAWNING: frozenset(
        {TenantStatus.ACTIVE, TenantStatus.FAILED, TenantStatus.SPAWNING, TenantStatus.STOPPED}
    ),
    TenantStatus.ACTIVE: frozenset(
        {TenantStatus.STOPPED, TenantStatus.FAILED, TenantStatus.SPAWNING, TenantStatus.REGISTERED}
    ),
    TenantStatus.FAILED: frozenset(
        {TenantStatus.SPAWNING, TenantStatus.STOPPED, TenantStatus.REMOVED, TenantStatus.REGISTERED}
    ),
    TenantStatus.STOPPED: frozenset(
        {
            TenantStatus.ACTIVE,
            TenantStatus.SPAWNING,
            TenantStatus.FAILED,
            TenantStatus.REMOVED,
            TenantStatus.REGISTERED,
        }
    ),
    TenantStatus.REMOVED: frozenset({TenantStatus.REGISTERED}),
}


HAS_JAIL = frozenset({TenantStatus.SPAWNING, TenantStatus.ACTIVE, TenantStatus.STOPPED, TenantStatus.FAILED})
"""The states in which a tenant may have a jail (remove-tenant refuses them without --destroy-jail;
reconcile and destroy-agent look for their jails)."""


def check_transition(tenant_id: str, current: TenantStatus, new: TenantStatus) -> None:
    """Raise StateConflict unless ``current → new`` is an edge of the state machine."""
    if new not in _TRANSITIONS[current]:
        raise StateConflict(f"tenant {tenant_id} is {current}; it cannot become {new}")


class AgentState(enum.StrEnum):
    """An agent's liveness, as the hive sees it.

    active → stale (a missed TTL) → lost (past the grace: its tasks are requeued); stale → active (a
    heartbeat); any → left (it deregistered); any → active (it registered again).
    """

    ACTIVE = "active"
    STALE = "stale"
    LOST = "lost"
    LEFT = "left"


LIVE_AGENT_STATES = frozenset({AgentState.ACTIVE, AgentState.STALE})
"""Agents that may come back: they count against a tenant's agents, the registry starts from them."""

_AGENT_TRANSITIONS: dict[AgentState, frozenset[AgentState]] = {
    AgentState.ACTIVE: frozenset({AgentState.ACTIVE, AgentState.STALE, AgentState.LOST, AgentState.LEFT}),
    AgentState.STALE: frozenset({AgentState.ACTIVE, AgentState.STALE, AgentState.LOST, AgentState.LEFT}),
    AgentState.LOST: frozenset({AgentState.ACTIVE, AgentState.LOST, AgentState.LEFT}),
    AgentState.LEFT: frozenset({AgentState.ACTIVE, AgentState.LEFT}),
}


def agent_may_become(current: str, new: str) -> bool:
    """Whether ``current → new`` is an edge of the agent state machine (a lost or gone agent comes
    back only by registering again, which makes it active)."""
    return AgentState(new) in _AGENT_TRANSITIONS[AgentState(current)]


class TaskState(enum.StrEnum):
    """A task's lifecycle.

    queued → running (claimed: a lease); running → succeeded | failed (its agent reported);
    running → queued (a lease expired, its agent was lost, registered again or deregistered, or
    the lease never reached it), until its attempts are spent: then running → failed.
    """

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


FINISHED_TASK_STATES = frozenset({TaskState.SUCCEEDED, TaskState.FAILED})
UNFINISHED_TASK_STATES = frozenset({TaskState.QUEUED, TaskState.RUNNING})

_TASK_TRANSITIONS: dict[TaskState, frozenset[TaskState]] = {
    TaskState.QUEUED: frozenset({TaskState.RUNNING}),
    TaskState.RUNNING: frozenset({TaskState.SUCCEEDED, TaskState.FAILED, TaskState.QUEUED}),
    TaskState.SUCCEEDED: frozenset(),
    TaskState.FAILED: frozenset(),
}


def check_task_transition(task_id: int | None, current: str, new: TaskState) -> None:
    """Raise StateConflict unless ``current → new`` is an edge of the task state machine."""
    if new not in _TASK_TRANSITIONS[TaskState(current)]:
        raise StateConflict(f"task {task_id} is {current}; it cannot become {new}")


def requeue_outcome(attempts: int, max_attempts: int) -> TaskState:
    """A running task taken from its agent: queued again, or failed once its attempts are spent."""
    return TaskState.FAILED if attempts >= max_attempts else TaskState.QUEUED
