"""Review 19 of the audit hot paths (the head swap, the cached ``pending``, the remembered key id).

F1: ``AuditSigner.pending`` counts from the size cached in the signer (``_signed_size``) and never
reads the memory again.  When the store holds fewer entries than that size (truncated, restored,
a promoted replica that lacked the last commits) and the memory is gone (the compromise that
deleted the entries took it too, as tests/unit/audit/test_witness.py models, or it was lost), a
signer without the cache counts the unsigned entries and signs.  Its witnesses then refuse, or it
refuses and logs.  The daemon's long-lived signer says 0: it does not sign the entries written
since, however many and however long ago, until the head passes the cached size.

F2: ``AuditSigner._key`` skips the key table once it has seen its key id there (``_recorded``:
"a key row is never removed").  A store that lost the commit which recorded the key (a failover
to an asynchronous replica that had not received it, runbooks/postgres-replica.md; a restore)
no longer holds the key.  A fresh signer records it again; the long-lived one signs checkpoints
under a key the store does not hold, and verify and the witnesses cannot open them.

Fixed: ``pending`` drops its cached size when the head is below it and counts from the memory
again; the signer reads the key table before every checkpoint, as it did before the cache.
"""

from pathlib import Path

from sqlalchemy import text

from colibri.adapters.audit_keys import KeyDir
from colibri.audit import origin
from colibri.audit.entry import Event
from colibri.services.audit.signer import AuditSigner
from colibri.store.audit import AuditRepo
from colibri.store.audit_trail import TrailRepo
from colibri.store.db import Store


def _append(store: Store, count: int, start: int = 0) -> None:
    for n in range(start, start + count):
        with store.session() as session:
            AuditRepo(session).append(Event("tenant.register", f"tenant:t{n}", tenant=f"t{n}"))


def _truncate(store: Store, host: str, keep: int) -> None:
    """What a truncation (or a restore, or a promoted replica missing the last commits) leaves:
    the host's entries and checkpoints after ``keep`` gone, its head row back at entry ``keep``."""
    with store.connect() as conn:
        conn.execute(text("DELETE FROM audit_entries WHERE host = :h AND seq > :k"), {"h": host, "k": keep})
        conn.execute(text("DELETE FROM audit_checkpoints WHERE host = :h AND size > :k"), {"h": host, "k": keep})
        leaf = conn.execute(
            text("SELECT leaf FROM audit_entries WHERE host = :h AND seq = :k"), {"h": host, "k": keep}
        ).scalar_one()
        conn.execute(
            text("UPDATE audit_heads SET seq = :k, leaf = :l WHERE host = :h"), {"h": host, "k": keep, "l": leaf}
        )
        conn.commit()


def test_f1_pending_after_a_truncation_with_the_memory_gone_is_what_a_fresh_signer_counts(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        keydir = tmp_path / "audit"
        daemon = AuditSigner(store, KeyDir(keydir, "osa"), "osa")  # the audit loop's, alive throughout
        with origin.acting("daemon", host="osa", vouch=daemon.keys.entry_key):
            _append(store, 40)
            assert (signed := daemon.checkpoint()) is not None and signed.size == 41  # 40 and the key
            assert daemon.pending() == 0
            # the compromise: entries 32..41 and the checkpoint deleted, the memory with them
            _truncate(store, "osa", 31)
            (keydir / "memory.json").unlink()
            _append(store, 4, start=500)  # entries 32..35, written after it: no checkpoint covers them
            fresh = AuditSigner(store, KeyDir(keydir, "osa"), "osa")  # the daemon after a restart
            assert fresh.pending() == 35  # no checkpoint at or below the head: it signs all (the witnesses then refuse)
            # the long-lived signer would not sign them at all (not after 10 s, not after 256)
            assert daemon.pending() == fresh.pending()
    finally:
        store.close()


def test_f2_a_key_the_store_lost_is_recorded_again_before_it_signs(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        signer = AuditSigner(store, KeyDir(tmp_path / "audit", "osa"), "osa")  # the daemon's, alive throughout
        with origin.acting("daemon", host="osa", vouch=signer.keys.entry_key):
            _append(store, 3)
            public = signer.public_key()  # the key made and recorded: its row and entry osa#4 (audit.key_create)
            # (the daemon's cosign or checkpoint does the same in _key(); its checkpoint's own commit then failed)
            # the store loses that commit: a promoted replica that had not received it, or a restore
            with store.connect() as conn:
                conn.execute(text("DELETE FROM audit_keys WHERE host = 'osa'"))
                conn.commit()
            _truncate(store, "osa", 3)
            _append(store, 2, start=10)  # osa#4, osa#5 on the store as it now is
            signed = signer.checkpoint()
            # size 5 (6 where the key is recorded again first), under the key it made
            assert signed is not None and signed.size >= 5 and signed.key_id == public.key_id
            with store.session() as session:
                held = {(row.host, row.key_id) for row in TrailRepo(session).public_keys()}
            # a fresh signer (the daemon restarted) records the key before signing; this one does not
            assert ("osa", public.key_id) in held, "checkpoint osa@5 signed by a key the store does not hold"
    finally:
        store.close()
