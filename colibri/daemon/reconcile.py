"""The daemon's reconcile loop body: compare the jails with the store (a dry run) and log each
difference.  The loop in server.py runs it on its own thread, bounded in time, so a stuck
``bastille`` never stalls the hive; repairs stay an operator's call (``colibri reconcile --apply``).
"""

import logging
from typing import Any

from colibri.adapters.backends import make_backend
from colibri.services.lifecycle.operations import AgentService
from colibri.services.lifecycle.reconcile import Reconciler, describe_drifts
from colibri.settings import Settings
from colibri.store.db import Store
from colibri.store.repos import TenantRepo

log = logging.getLogger("colibri.daemon")


def run_reconcile(settings: Settings, store: Store) -> list[dict[str, Any]]:
    drifts = daemon_reconcile(settings, store)
    for drift in drifts:
        log.warning(
            "reconcile: %s jail %s (tenant %s): %s", drift["kind"], drift["jail"], drift["tenant"], drift["action"]
        )
    return drifts


def daemon_reconcile(settings: Settings, store: Store) -> list[dict[str, Any]]:
    """A dry run of reconcile; the daemon, a composition root like the CLI's context, builds the
    backend from its settings (services are handed theirs)."""
    agents = AgentService(store, make_backend(settings), settings.run_dir / "locks", state_dir=settings.state_dir)
    drifts = describe_drifts(Reconciler(store, agents).reconcile(apply=False))
    with store.session() as session:  # many hosts (issue 11): a tenant living on another host is not ours
        elsewhere = {t.tenant_id for t in TenantRepo(session).find(include_removed=True) if t.host != settings.host}
    return [dict(d) for d in drifts if d["tenant"] not in elsewhere]
