"""Every audit action colibri records, with what it means (issue 12).

The catalogue is the contract between the code and the people who read a bundle: every
``action`` an entry carries is named here (tests/unit/audit/test_actions_hooks.py checks the
code's literals against it), and docs/AUDIT_ACTIONS.md is generated from it
(``python -m colibri.audit.actions > docs/AUDIT_ACTIONS.md``; the same test checks it is current).

Each entry also carries its subject (``tenant:<t>``, ``task:<n>``, ``agent:<t>/<id>``,
``host:<h>``, ``lane:<l>``), its outcome (ok, failed, refused) and its actor: the operator's uid
for a command, the socket's owner (``tenant:<t>``, ``lane:<l>``, ``operator:admin-socket``) or the
agent (``agent:<t>/<id>``, ``lane:<l>/<id>``) for a daemon request, ``daemon`` for the daemon's
own loops.  Details hold names, states, counts and keyed digests, never a secret value.
"""

ACTIONS: dict[str, str] = {
    # tenants
    "tenant.register": "a tenant was registered (or a removed one registered again): its host and collection",
    "tenant.change": "a tenant's fields or status changed outside the named operations below",
    "tenant.remove": "a tenant was marked removed",
    "tenant.move": "a tenant was re-homed to another host (move-tenant), its jail forgotten if the old host was lost",
    # the spawn pipeline
    "spawn.begin": "a spawn (or spawn-local) began: the tenant is spawning, with the backend and capabilities asked",
    "spawn.allocate": "a spawn took the tenant's block of host ids or its jail IP from the pool",
    "spawn.step": "a spawn step completed (jail_created, jail_started, secrets_provisioned, mother_installed, ...)",
    "spawn.adopt": "a spawn adopted an existing jail (its first step, with adopted true)",
    "spawn.done": "a spawn finished: the tenant is active",
    "spawn.fail": "a spawn failed: the tenant is failed, with the error",
    "spawn.abandon": "a spawn cut short (killed) was marked failed before its jail was destroyed",
    "adopt.claim_ids": "an adopted jail's block of host ids was recorded as the tenant's",
    "adopt.undo": "a failed adoption was undone: the jail is no longer the tenant's",
    # operations
    "agent.start": "a tenant's jail and mother were started: the tenant is active",
    "agent.stop": "a tenant's jail (or local mother) was stopped",
    "agent.destroy": "a tenant's jail was destroyed: the tenant is registered again",
    "agent.release": "an adopted jail was handed back (colibri's additions removed): the tenant is registered again",
    "reconcile.repair": "reconcile --apply repaired a drift (started/stopped a jail, marked a tenant failed) or failed",
    # secrets and the vault
    "secrets.provision": "a tenant's .env was written on this host: its key names and keyed digest (HMAC-SHA256); "
    "recorded just before the rename, so a rename that then fails is a second one, failed, installed false",
    "secrets.status": "a tenant's secrets status changed without a write (stale after a refusal, none: no collection)",
    "secrets.send": "the orchestrator sent a tenant's rendered .env to its host: key names, keyed digest, the answer",
    "vault.login": "the operator's vault credentials were proved and stored (or replaced): where, never the credential",
    # other hosts, from the orchestrator's side
    "remote.spawn": "the orchestrator asked a tenant's host to spawn it: the key names sent, the outcome answered",
    "remote.start": "the orchestrator asked a tenant's host to start it, and what it answered",
    "remote.stop": "the orchestrator asked a tenant's host to stop it, and what it answered",
    "remote.destroy": "the orchestrator asked a tenant's host to destroy its jail, and what it answered",
    "remote.release": "the orchestrator asked a tenant's host to release its adopted jail, and what it answered",
    "remote.reconcile": "the orchestrator asked a host to reconcile with --apply, and what it answered",
    "remote.write_env": "the orchestrator asked a tenant's host to write its .env, and what it answered",
    # hosts
    "host.add": "a host was enrolled: its SSH address and the number of pinned host keys",
    "host.remove": "a host was removed from the hive",
    "host.check": "a host was checked over SSH: the version and backend found, or the error",
    "host.up": "a host's daemon took a new lease term (it started, or came back after being declared lost)",
    "host.down": "a host's daemon stopped cleanly and gave its lease up",
    "host.lost": "a host's lease ran out past the grace: declared lost by another host's daemon (its agents lost)",
    # the hive: agents
    "agent.register": "an agent registered (or again) on its tenant's or lane's socket, with its capabilities",
    "agent.leave": "an agent deregistered",
    "agent.stale": "an agent missed its heartbeats past its TTL",
    "agent.lost": "an agent missed its heartbeats past the grace, or its host was lost: its tasks are requeued",
    "agent.revive": "a stale agent beat again and is active",
    "agent.prune": "gone agents (left, lost) of a tenant or lane past its agent cap were deleted: which",
    "lane.declare": "the operator declared a shared lane",
    # the hive: tasks
    "task.submit": "a task was queued: its capability, tenant and payload size (never the payload)",
    "task.claim": "an agent claimed a task: the agent and the claim's fence",
    "task.complete": "an agent reported a task succeeded",
    "task.fail": "an agent reported a task failed, or it was given up after its attempts",
    "task.requeue": "a task went back to the queue: its lease expired, its agent was lost or left, or it never got it",
    "task.prune": "finished tasks were deleted by retention (their age, or a tenant's caps): how many, which ids",
    # the audit itself
    "audit.key_create": "this host's first audit signing key was made (when it first signed a checkpoint): its key id",
    "audit.key_rotate": "this host's audit key was rotated (audit keys --rotate): the new key id, endorsed by the old",
    "audit.cosign": "this host's daemon refused to cosign another host's checkpoint: not an extension of one it signed",
}


def markdown() -> str:
    """docs/AUDIT_ACTIONS.md: the catalogue as a table."""
    lines = [
        "# Audit actions",
        "",
        "Generated from `colibri/audit/actions.py` (`python -m colibri.audit.actions > docs/AUDIT_ACTIONS.md`);",
        "a test fails when the two differ. Every entry also names its subject, outcome and actor.",
        "",
        "| action | meaning |",
        "|---|---|",
    ]
    lines += [f"| `{action}` | {meaning} |" for action, meaning in ACTIONS.items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    import sys

    sys.stdout.write(markdown())
