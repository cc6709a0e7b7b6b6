"""The reconcile hook: run the jails reconcile (issue "Jails") on an interval, tolerant and bounded.

Contract with ``colibri.services.jails`` (looked up at run time, so the daemon works before and
without it): a function ``daemon_reconcile(settings, store) -> object`` that checks the jails
against the store without changing anything (a dry run) and returns a JSON-able summary; or,
failing that, ``JailService.for_daemon(settings, store).reconcile(dry_run=True)``.  The hook runs
on its own thread; a run that outlives its time budget is abandoned by the loop (and the next
run waits until that thread has returned), so a stuck ``bastille`` never stalls the hive.
"""

import importlib
import logging
from collections.abc import Callable
from typing import Any

from colibri.settings import Settings
from colibri.store.db import Store

log = logging.getLogger("colibri.daemon")


def find_hook(settings: Settings, store: Store) -> Callable[[], Any] | None:
    """The reconcile function to call, or None when the jails service does not offer one."""
    try:
        module = importlib.import_module("colibri.services.jails")
    except ImportError:
        return None
    except Exception as exc:  # a half-written module must not stop the daemon
        log.warning("reconcile hook unavailable: importing colibri.services.jails failed: %s", exc)
        return None
    function = getattr(module, "daemon_reconcile", None)
    if callable(function):
        return lambda: function(settings, store)
    service = getattr(module, "JailService", None)
    factory = getattr(service, "for_daemon", None)
    if callable(factory):
        return lambda: factory(settings, store).reconcile(dry_run=True)
    return None
