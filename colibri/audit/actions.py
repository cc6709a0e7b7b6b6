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
    # issue 13: skills (part S2: tiers, installs)
    "tenant.tier": "a tenant's tier was changed (set-tier): paid (first-party skills only) or community",
    "skill.install": "a skill was installed in a tenant's jail: its name, version, manifest digest and source",
    "skill.remove": "a skill no longer asked for was taken out of a tenant's jail: its name, version, digest",
    "agent.refuse": "the daemon refused an agent's registration: a skill it loaded or a capability not installed",
    "skill.refuse": "a spawn's skills were refused before anything was made (tier, a tenant's name, a bad bundle)",
    # the audit itself
    "audit.key_create": "this host's first audit signing key was made (when it first signed a checkpoint): its key id",
    "audit.key_rotate": "this host's audit key was rotated (audit keys --rotate): the new key id, endorsed by the old",
    "audit.cosign": "this host's daemon refused to cosign another host's checkpoint: not an extension of one it signed",
    # issue 13: the signed skills supply chain (part S1)
    "skills.trust": "this host pinned the skills repository's root public key (or replaced it): its key id",
    "skills.allow": "the operator allowed a community skill on this host, pinned by its bundle digest",
    "skills.delegate": "a signing key was delegated in the skills repository's root.json: its key id, the root version",
    "skills.revoke": "a signing key was revoked in the skills repository's root.json: its key id, the root version",
    "skills.publish": "signed skills were published into the repository: the new index version, the skills added",
    # the spawn policy (issue 14, part A1): every decision recorded before it acts
    "policy.decide": (
        "an agent's request for a child was decided: allow (ok) or deny (refused), the rule that decided, "
        "its reason and the inputs (agent, template, capabilities, skills, host, depth, children, rate count, "
        "lineage, the global switch), and the reservation granted"
    ),
    "policy.bind": "a granted reservation was bound to the child tenant colibri chose for it",
    "policy.use": "a granted reservation was used: its child was spawned",
    "policy.release": "a reservation was released (the spawn failed, or its child was removed): its place is free",
    "policy.sweep": "an expired reservation was settled: used (its child exists) or released (never spawned)",
    "policy.set": "the operator set a tenant's spawn policy: the fields changed and their new values",
    "policy.global": "the operator set the global switch: self-spawn forbidden (or allowed again) on every tenant",
    # children (issue 14, part A2): an agent's request made a tenant, its spawn, a cascade removal
    "child.register": "a child tenant was registered for an allowed request: its id chosen by colibri, its host, "
    "its lineage root's collection",
    "child.bind": "a child tenant was linked to its parent and reservation: the root, the asking agent, its depth",
    "child.deny": "a request for a child was refused before the policy: it asked for a capability its parent lacks",
    "child.discard": "a child whose reservation was released (its spawn failed, or it expired) is being destroyed",
    "child.forget": "a child destroyed by remove-tenant --cascade: its rows deleted (the count of each table's)",
    "tenant.cascade": "remove-tenant --cascade began: the children it removes, the deepest first",
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
