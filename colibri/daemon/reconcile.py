"""The daemon's reconcile loop body: compare the jails with the store (a dry run) and log each
difference.  The loop in server.py runs it on its own thread, bounded in time, so a stuck
``bastille`` never stalls the hive; repairs stay an operator's call (``colibri reconcile --apply``).
"""

import logging
from typing import Any

from colibri.services.lifecycle.reconcile import daemon_reconcile
from colibri.settings import Settings
from colibri.store.db import Store

log = logging.getLogger("colibri.daemon")


def run_reconcile(settings: Settings, store: Store) -> list[dict[str, Any]]:
    drifts = daemon_reconcile(settings, store)
    for drift in drifts:
        log.warning(
            "reconcile: %s jail %s (tenant %s): %s", drift["kind"], drift["jail"], drift["tenant"], drift["action"]
        )
    return drifts
