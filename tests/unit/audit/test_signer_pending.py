"""What the daemon's audit loop asks every tick (``AuditSigner.pending``): after its first
checkpoint, one read of the head row, counted from the size the signer knows it signed; another
signer of the host (a command signing at its end) makes it count too many once, never too few."""

from pathlib import Path

from colibri.adapters.audit_keys import KeyDir
from colibri.audit import origin
from colibri.audit.entry import Event
from colibri.services.audit.signer import AuditSigner
from colibri.store.audit import AuditRepo
from colibri.store.db import Store


def _append(store: Store, count: int) -> None:
    with store.session() as session:
        AuditRepo(session).append_many([Event("tenant.register", f"tenant:t{n}", tenant=f"t{n}") for n in range(count)])


def test_pending_counts_from_what_was_signed_and_catches_up_with_another_signer(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        daemon = AuditSigner(store, KeyDir(tmp_path / "audit", "osa"), "osa")
        command = AuditSigner(store, KeyDir(tmp_path / "audit", "osa"), "osa")
        with origin.acting("daemon", host="osa", vouch=daemon.keys.entry_key):
            _append(store, 3)
            assert daemon.pending() == 3
            signed = daemon.checkpoint()
            assert signed is not None and signed.size == 4 and daemon.pending() == 0  # 3 and the key recorded
            _append(store, 2)
            assert daemon.pending() == 2
            assert (done := command.checkpoint()) is not None and done.size == 6  # a command signed them
            assert daemon.pending() == 2  # it has not looked: too many, never too few
            assert daemon.checkpoint() is None  # nothing to sign: the memory says 6
            assert daemon.pending() == 0
            _append(store, 4)
            assert daemon.pending() == 4 and command.pending() == 4
            assert (last := daemon.checkpoint()) is not None and last.size == 10
            assert daemon.pending() == 0
    finally:
        store.close()
