"""The daemon's audit loop: sign this host's checkpoint, cosign the other hosts' (issue 12).

Every ``tick`` (a tenth of ``audit_checkpoint_seconds``, at most a quarter second) the loop reads
how many of this host's entries are unsigned; it signs when ``audit_checkpoint_entries`` are, or
when the oldest unsigned one has waited ``audit_checkpoint_seconds``.  So the entries a crash can
leave unsigned are at most that many seconds' (plus a tick), or that many entries (plus what one
tick appends).  With several hosts on one store it then cosigns the others' newest checkpoints
(services/audit/signer.py): a refusal is logged and recorded in this host's own log.
All store work runs on the daemon's database thread (``Daemon.db``).
"""

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from colibri.adapters.audit_keys import KeyDir
from colibri.errors import ColibriError
from colibri.services.audit.signer import AuditSigner

if TYPE_CHECKING:
    from colibri.daemon.server import Daemon

log = logging.getLogger("colibri.daemon")


def tick(seconds: float) -> float:
    return min(0.25, max(0.01, seconds / 10))


async def run(daemon: "Daemon") -> None:
    """Until the daemon stops: sign when due, then cosign; errors are logged, the loop goes on."""
    store = daemon._store
    assert store is not None
    settings = daemon.settings
    signer = AuditSigner(store, KeyDir(settings.state_dir / "audit", settings.host), settings.host)
    waiting_since: float | None = None
    last_cosign = 0.0
    warned = False
    while not daemon.stopping:
        seconds = daemon.settings.audit_checkpoint_seconds
        await asyncio.sleep(tick(seconds))
        try:
            pending = await daemon.db(signer.pending)
            now = time.monotonic()
            if not pending:
                waiting_since = None
            elif waiting_since is None:
                waiting_since = now
            if waiting_since is not None and (
                pending >= daemon.settings.audit_checkpoint_entries or now - waiting_since >= seconds
            ):
                signed = await daemon.db(signer.checkpoint)
                waiting_since = None
                if signed is not None:
                    log.debug("audit: signed checkpoint %s@%d", signed.host, signed.size)
            if now - last_cosign >= seconds:
                last_cosign = now
                _, refused = await daemon.db(signer.cosign)
                for reason in refused:
                    log.error("audit: cosignature refused: %s", reason)
            warned = False
        except ColibriError as exc:
            if not warned:  # one line per run of failures, not one per tick
                log.error("audit loop: %s", exc)
                warned = True
        except Exception:
            log.exception("audit loop failed; it goes on")
