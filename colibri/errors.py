"""The one error tree of colibri, and the only place exit codes are defined.

Services and adapters raise these; only ``colibri.cli.app.main`` turns them into a line on stderr
(or a JSON error envelope) and an exit code.  Codes follow borg's idea: the class carries its code.

    ColibriError                         1  generic failure
    ├── ConfigError                      3  invalid settings or config file
    ├── NotFound                         4  a named object is missing
    │   ├── TenantNotFound
    │   ├── JailNotFound
    │   ├── AgentNotFound
    │   ├── TaskNotFound
    │   ├── TemplateNotFound
    │   └── HostNotFound
    ├── Conflict                         5  already exists, or in the wrong state
    │   ├── TenantExists
    │   ├── JailExists
    │   └── StateConflict
    ├── PermissionDenied                 6  insufficient privilege or unsafe permissions
    ├── InvalidInput                     7  a value given on the command line or in a request is invalid
    │   └── InvalidTenantId
    ├── ExternalError                   10  an external command failed
    │   ├── ToolMissing
    │   └── CommandFailed
    ├── JailError                       11  a jail backend (bastille or sandbox) failed
    │   ├── BastilleError                   bastille did not do what was asked
    │   └── MotherNotReady              17  the mother skill refused to start or never said ready
    ├── SecretsError                    12  the vault or the secrets source failed (fail-closed)
    │   ├── VaultLocked
    │   └── SecretsRefused                  a tenant's secrets hold values that cannot be written
    ├── RemoteError                     13  a remote host (ssh) failed
    │   ├── HostKeyRefused              19  the host's key is not the pinned one (nothing was sent)
    │   └── HostIncompatible            20  the remote colibri's major version or backend does not fit
    ├── CommandTimeout                  14  an external command or request timed out
    ├── StoreError                      15  the database failed
    │   └── SchemaTooNew
    ├── DaemonError                     16  the colibri daemon is not reachable or refused
    │   └── LimitExceeded                   a tenant's or a socket's limit is reached (HTTP 429)
    ├── RepairFailed                    18  reconcile --apply: a repair failed (each one named)
    ├── AuditError                      21  the audit trail does not verify (the first bad entry or
    │                                       checkpoint is named), or cannot be signed or exported
    ├── SupplyError                     22  a skill or package refused by the supply chain (issue 13)
    │   ├── SupplyUnavailable               no repository, no pinned root, unreachable, expired
    │   ├── SignatureRefused                an unknown, expired or revoked key, a bad signature
    │   ├── RollbackRefused                 a root or index older than one already seen
    │   ├── BundleRefused                   a bundle's bytes, files or paths do not match
    │   └── TierRefused                     not for this tenant's tier, or named like another tenant
    ├── PolicyDenied                    23  a spawn request denied by the spawn policy (its rule named)
    ├── PartialFailure                      some items of a batch failed: the worst item's code
    └── Interrupted                    130  a batch stopped by Ctrl-C (what was done is reported)
Messages never contain secrets: errors from tools whose output may hold secrets are raised
``from None`` with a message written by colibri.
"""


class ColibriError(Exception):
    """Something went wrong."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConfigError(ColibriError):
    """Invalid settings or configuration file."""

    exit_code = 3


class NotFound(ColibriError):
    """A named object does not exist."""

    exit_code = 4


class TenantNotFound(NotFound):
    def __init__(self, tenant_id: str) -> None:
        super().__init__(f"tenant not found: {tenant_id}")
        self.tenant_id = tenant_id


class JailNotFound(NotFound):
    def __init__(self, name: str) -> None:
        super().__init__(f"jail not found: {name}")
        self.name = name


class AgentNotFound(NotFound):
    """An agent id the daemon does not know."""


class TaskNotFound(NotFound):
    """A task id the daemon does not know."""


class TemplateNotFound(NotFound):
    """A jail template that does not exist."""


class HostNotFound(NotFound):
    def __init__(self, name: str) -> None:
        super().__init__(f"host not found: {name}")
        self.name = name


class Conflict(ColibriError):
    """The object already exists, or is in a state that forbids the operation."""

    exit_code = 5


class TenantExists(Conflict):
    """A tenant of that id exists with different fields."""


class JailExists(Conflict):
    """A jail of that name exists and colibri did not create it."""


class StateConflict(Conflict):
    """The operation is not allowed in the object's current state."""


class PermissionDenied(ColibriError):
    """Insufficient privilege, or a file or directory with unsafe permissions."""

    exit_code = 6


class InvalidInput(ColibriError):
    """A value given on the command line or in a request is invalid."""

    exit_code = 7


class ResultTooLarge(InvalidInput):
    """A task's result beyond ``task_max_result_bytes`` (the API answers 413)."""


class InvalidTenantId(InvalidInput):
    """A tenant id that is not a safe Bastille jail name."""


class ExternalError(ColibriError):
    """An external command failed."""

    exit_code = 10


class ToolMissing(ExternalError):
    def __init__(self, tool: str) -> None:
        super().__init__(f"required program not found: {tool}")
        self.tool = tool


class CommandFailed(ExternalError):
    """A command exited non-zero.  ``stderr_tail`` is only kept when the output cannot hold secrets."""

    def __init__(self, argv: tuple[str, ...], exit_status: int, detail: str = "") -> None:
        shown = " ".join(argv[:3]) + (" ..." if len(argv) > 3 else "")
        suffix = f": {detail}" if detail else ""
        super().__init__(f"command failed with exit status {exit_status}: {shown}{suffix}")
        self.argv = argv
        self.exit_status = exit_status
        self.detail = detail


class JailError(ColibriError):
    """A jail backend could not do what was asked."""

    exit_code = 11


class BastilleError(JailError):
    """bastille failed, or said it succeeded while the jail is not in the state asked for."""


class MotherNotReady(JailError):
    """The mother skill in a jail refused to start (its own reason is the message), exited, or did
    not log its ready line in time: the agent is not active."""

    exit_code = 17


class SecretsError(ColibriError):
    """The vault or the staged secrets could not be read or rendered; nothing was written."""

    exit_code = 12


class VaultLocked(SecretsError):
    """The vault could not be unlocked."""


class SecretsRefused(SecretsError):
    """A tenant's secrets hold keys or values that cannot be written: ``problems`` names each
    (its key and where it came from, never a value); ``summary`` is the one-line gist."""

    def __init__(self, summary: str, problems: tuple[str, ...], total: int) -> None:
        shown = "; ".join(problems)
        more = f"; and {total - len(problems)} more" if total > len(problems) else ""
        super().__init__(problems[0] if total == 1 else f"{summary}: {shown}{more}")
        self.summary = summary
        self.problems = problems
        self.total = total


class RemoteError(ColibriError):
    """A remote host could not be reached or refused the command."""

    exit_code = 13


class HostKeyRefused(RemoteError):
    """The host's SSH key is not one of those pinned at enrolment: refused before authentication,
    so nothing (no key, no command, no secret) was sent."""

    exit_code = 19


class HostIncompatible(RemoteError):
    """The remote colibri is another major version, or lacks the jail backend asked for."""

    exit_code = 20


class CommandTimeout(ColibriError):
    exit_code = 14

    def __init__(self, what: str, seconds: float) -> None:
        super().__init__(f"timed out after {seconds:g} s: {what}")
        self.seconds = seconds


class StoreError(ColibriError):
    """The database could not be opened, read or written."""

    exit_code = 15


class SchemaTooNew(StoreError):
    """The database was migrated by a newer colibri."""


class DaemonError(ColibriError):
    """The colibri daemon is not reachable or refused the request."""

    exit_code = 16


class LimitExceeded(DaemonError):
    """The daemon refused: a tenant's (or a socket's) limit is reached (HTTP 429)."""


class PartialFailure(ColibriError):
    """Some items of a batch failed; the exit code is the worst of theirs."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class Interrupted(ColibriError):
    """A batch stopped by the operator's Ctrl-C: the tenants done, the one in hand and those not
    run are reported; the exit code is KeyboardInterrupt's own."""

    exit_code = 130


class RepairFailed(ColibriError):
    """``reconcile --apply``: at least one repair did not work (each is named in the output)."""

    exit_code = 18


class AuditError(ColibriError):
    """The audit trail does not verify (the message names the first bad entry, checkpoint or key and
    why), a checkpoint or cosignature was refused, or an export could not be made."""

    exit_code = 21


class SupplyError(ColibriError):
    """A skill or package refused by the supply chain (issue 13): the message names the skill and
    the reason; nothing was extracted or installed."""

    exit_code = 22


class SupplyUnavailable(SupplyError):
    """No repository or no pinned root, the repository unreachable, or its index expired: new
    installs are blocked (running agents are not touched)."""


class SignatureRefused(SupplyError):
    """A root, index or manifest not signed by a key the pinned root delegates (unknown, expired,
    revoked, or a signature that does not verify)."""


class RollbackRefused(SupplyError):
    """A root or index version older than one this host has seen, or the same version with other bytes."""


class BundleRefused(SupplyError):
    """A bundle whose digest, size, files or paths do not match its index entry and manifest."""


class TierRefused(SupplyError):
    """A skill this tenant may not have: community for a paid tenant, or named like another tenant."""


class PolicyDenied(ColibriError):
    """A spawn request denied by the spawn policy (issue 14), or one whose decision could not be
    recorded in the audit trail (denied: nothing was reserved).  ``rule`` names the rule."""

    exit_code = 23

    def __init__(self, message: str, rule: str = "audit-failed") -> None:
        super().__init__(message)
        self.rule = rule


INTERNAL_ERROR_EXIT = 1
"""An unexpected exception (a bug): one line, the traceback only with --debug."""

TASK_FAILED_EXIT = ColibriError.exit_code
"""``submit-task --wait``: the task ran and failed (its error is shown)."""


EXIT_CODES: dict[int, str] = {
    0: "success",
    1: "generic failure (ColibriError), an internal error (a bug; --debug shows it), or an aborted confirmation",
    2: "bad command line (usage error)",
    3: "invalid settings or configuration file (ConfigError)",
    4: "a named tenant, jail, agent, task, template or host does not exist (NotFound)",
    5: "already exists with other fields, or in a state that forbids it (Conflict)",
    6: "insufficient privilege or unsafe permissions (PermissionDenied)",
    7: "invalid value, e.g. a tenant id (InvalidInput)",
    10: "an external command failed or is missing (ExternalError)",
    11: "a jail backend (bastille or sandbox) failed (BastilleError, JailError)",
    12: (
        "secrets could not be fetched or written, for any reason (the vault, an unsafe path, the operator's "
        "credentials, bw, a bad key or value); the old .env is kept (SecretsError)"
    ),
    13: "a remote host failed (RemoteError)",
    14: "a command or request timed out (CommandTimeout)",
    15: "the database failed (StoreError)",
    16: "the colibri daemon is unreachable or refused (DaemonError)",
    17: "the mother skill in the jail refused to start or never became ready; its reason is shown (MotherNotReady)",
    18: "reconcile --apply: a repair failed; each failing item is in the output (RepairFailed)",
    19: "a remote host's SSH key is not the one pinned at enrolment; nothing was sent (HostKeyRefused)",
    20: (
        "the remote colibri is another major version, lacks the backend asked for, or calls itself by "
        "another name than the host was enrolled under (HostIncompatible)"
    ),
    21: (
        "the audit trail does not verify (the first bad entry, checkpoint or key is named with the reason), "
        "or a checkpoint, cosignature or export was refused (AuditError)"
    ),
    22: (
        "a skill or package refused by the supply chain: unsigned, unknown or revoked key, rollback, expired "
        "or unreachable index, a bundle that does not match, not for the tenant's tier; nothing installed (SupplyError)"
    ),
    23: (
        "a spawn request was denied by the spawn policy (the rule is named), or its decision could not be "
        "recorded in the audit trail, so nothing was reserved (PolicyDenied)"
    ),
    130: "interrupted (Ctrl-C)",
    143: "terminated (SIGTERM)",
}
"""Every exit code colibri uses; README.md and `colibri --help` show this table."""
