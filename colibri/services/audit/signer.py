"""Signing this host's checkpoints, cosigning the other hosts', rotating this host's key.

The signer keeps, beside its key, the compact range of the newest tree it signed (``KeyDir``
memory): a new checkpoint folds in only the entries after it, and a store holding fewer entries
than this host signed (the newest deleted, a replayed old state) is refused, logged and recorded
instead of being signed over.  A witness keeps the same per other host: the newest tree it
cosigned and the key it pinned; a checkpoint that does not extend that tree (the entries in the
shared store between the two sizes do not fold to its root) is refused, and the refusal is an entry
of the witness's own log (``audit.cosign`` refused), which ``audit verify`` reports.
"""

import base64
import contextlib
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from colibri.adapters.audit_keys import KeyDir
from colibri.audit import note, origin
from colibri.audit.entry import Event
from colibri.audit.note import BadNote, Checkpoint, PublicKey
from colibri.errors import AuditError
from colibri.services.audit.fold import _after, _fold, _Partial, _range, _remembered
from colibri.services.audit.peer_keys import _peer_chain, _peer_keys
from colibri.store.audit import AuditRepo, timestamp
from colibri.store.audit_head import head_seq
from colibri.store.audit_trail import AuditCheckpoint, AuditCosignature, AuditKey, TrailRepo
from colibri.store.db import Store

log = logging.getLogger("colibri.audit")
COSIGN_STEP = 50_000
"""At most this many of another host's entries are folded per cosigning run (a first cosignature
of a long log takes several runs, each a second or two on the database thread)."""
OWN_ROWS = 64
"""How many of a host's largest checkpoint rows its signer reads for the newest one it signed
(rows under its name it did not sign are reported and skipped)."""


@dataclass(frozen=True)
class Signed:
    host: str
    size: int
    root: str
    key_id: str
    signed_at: str


class AuditSigner:
    def __init__(self, store: Store, keys: KeyDir, host: str) -> None:
        self.store = store
        self.keys = keys
        self.host = host
        self._reported: set[tuple[int, str]] = set()  # rows under this host's name it did not sign
        self._reported_peers: set[tuple[str, int, str]] = set()  # other hosts' rows they did not sign
        self._signed_size: int | None = None  # the size this signer last knew it signed (``pending``)

    def _record(self, session: Any, event: Event) -> None:
        """An entry of the signer's own (a key made or rotated, a refusal), in this host's log with
        this host's MAC whatever origin the caller set."""
        with origin.acting(origin.current().actor, host=self.host, vouch=self.keys.entry_key):
            AuditRepo(session).append(event)

    # ---- keys ----------------------------------------------------------------------------------
    def _key(self) -> tuple[Ed25519PrivateKey, PublicKey]:
        """This host's key (made on first use, and then recorded); call with the lock held."""
        self._settle()
        loaded = self.keys.load(create=True)
        assert loaded is not None
        private, _ = loaded
        public = self.keys.public(private)
        with self.store.session() as session:
            repo = TrailRepo(session)
            known = {(row.host, row.key_id) for row in repo.public_keys()}
            if (self.host, public.key_id) not in known:
                now = timestamp()
                repo.add_key(AuditKey(host=self.host, key_id=public.key_id, public_key=public.vkey, created_at=now))
                self._record(session, Event("audit.key_create", f"host:{self.host}", detail={"key": public.key_id}))
        return private, public

    def _settle(self) -> None:
        """Finish or undo a rotation a crash interrupted (call with the lock held): a staged next
        key the store records (its row, endorsed by the old key, committed) replaces the old one;
        one the store does not know was never rotated to, and is removed (the old key stays)."""
        staged = self.keys.staged()
        if staged is None:
            return
        public = self.keys.public(staged)
        with self.store.session() as session:
            rows = [row for row in TrailRepo(session).public_keys() if row.host == self.host]
        if any(row.key_id == public.key_id and row.endorsement for row in rows):
            self.keys.promote()
            log.warning("audit: finished the rotation to key %s (interrupted after the store recorded it)",
                        public.key_id)  # fmt: skip
        else:
            self.keys.discard_staged()
            log.warning("audit: undid an interrupted rotation to key %s (the store never recorded it)",
                        public.key_id)  # fmt: skip

    def public_key(self) -> PublicKey:
        with self.keys.locked():
            return self._key()[1]

    def rotate(self) -> tuple[PublicKey, PublicKey]:
        """A new key, endorsed by the old one, which is retired; (old, new)."""
        with self.keys.locked():
            private, old = self._key()
            self._sign(private, old)  # everything so far, under the old key
            new_private = Ed25519PrivateKey.generate()
            new = self.keys.public(new_private)
            now = timestamp()
            endorsement = {
                "by": old.key_id,
                "time": now,
                "signature": base64.b64encode(private.sign(note.endorse_message(new, now))).decode(),
            }
            # the new key staged beside the old one, then the store's rows committed, then the new key
            # put in place: a crash before the commit leaves the old key in force and the staged one
            # is removed; a crash after it, the staged one is put in place (``_settle``)
            self.keys.stage(new_private)
            try:
                self._rotate_rows(old, new, now, endorsement)
            except BaseException:
                with contextlib.suppress(Exception):  # the store decides (a commit may fail after it is made)
                    self._settle()
                raise
            self.keys.promote()
            self._sign(new_private, new)
            return old, new

    def _rotate_rows(self, old: PublicKey, new: PublicKey, now: str, endorsement: dict[str, str]) -> None:
        with self.store.session() as session:
            repo = TrailRepo(session)
            repo.retire_key(self.host, old.key_id, now)
            repo.add_key(
                AuditKey(
                    host=self.host,
                    key_id=new.key_id,
                    public_key=new.vkey,
                    created_at=now,
                    endorsement=json.dumps(endorsement, sort_keys=True),
                )
            )
            self._record(
                session,
                Event("audit.key_rotate", f"host:{self.host}", detail={"old": old.key_id, "new": new.key_id}),
            )

    def sign_statement(self, message: bytes) -> tuple[str, bytes]:
        """(key id, signature) of ``message`` under this host's key (the export's statement)."""
        with self.keys.locked():
            private, public = self._key()
            return public.key_id, private.sign(message)

    # ---- checkpoints ---------------------------------------------------------------------------
    def checkpoint(self) -> Signed | None:
        """Sign this host's tree if its head is ahead of the newest checkpoint; None if not."""
        with self.keys.locked():
            private, public = self._key()
            return self._sign(private, public)

    def head(self) -> int:
        """This host's newest seq (0 before its first entry)."""
        with self.store.session() as session:
            return TrailRepo(session).heads().get(self.host, (0, ""))[0]

    def pending(self) -> int:
        """How many of this host's entries its newest checkpoint does not cover (no key needed): the
        size it remembers signing, not the store's rows (one under its name it never signed,
        however large, does not stop it signing); without a memory, the largest row not above the head."""
        if self._signed_size is not None:  # the daemon's loop, every tick: one read of the head row
            with self.store.connect() as conn:
                head = head_seq(conn, self.host)
            if head >= self._signed_size:
                return head - self._signed_size
            self._signed_size = None  # fewer entries than it signed: counted again from the memory
        mine = self.keys.memory().get("self")
        with self.store.session() as session:
            repo = TrailRepo(session)
            head = repo.heads().get(self.host, (0, ""))[0]
            if mine:
                self._signed_size = int(mine["size"])
                return max(0, head - self._signed_size)
            rows = [row.size for row in repo.recent_checkpoints(self.host, OWN_ROWS) if row.size <= head]
        return head - max(rows, default=0)

    def _sign(self, private: Ed25519PrivateKey, public: PublicKey) -> Signed | None:
        memory = self.keys.memory()
        mine = memory.get("self")
        tree, leaf, last_time = _range(mine)
        # what ``pending`` counts from: what the memory says now (another signer of this host, a
        # command, may have signed since), then what this run signs
        self._signed_size = tree.size if mine else None
        with self.store.session() as session:
            repo = TrailRepo(session)
            head = repo.heads().get(self.host, (0, "0" * 64))[0]
            if head < tree.size:
                reason = (
                    f"the store holds {head} entries of host {self.host} but this host signed {tree.size}: "
                    f"entries {self.host}#{head + 1}..{tree.size} were deleted or an old state restored"
                )
                log.error("audit: refusing to sign: %s", reason)
                raise AuditError(f"refusing to sign a checkpoint: {reason}")
            latest = self._own_latest(repo, public)
            if head == tree.size and latest is not None and latest.size == head:
                return None
            before = (latest.size, latest.root) if latest is not None and latest.size > tree.size else None
            leaf = _fold(repo, self.host, tree, leaf, head, before, self.keys.entry_key())
            root = tree.root()
            if latest is not None and latest.size >= head:
                if latest.size == head and latest.root == root.hex():  # signed, then the memory write failed
                    memory["self"] = _remembered(tree, leaf, latest.signed_at)
                    self.keys.remember(memory)
                    self._signed_size = tree.size
                    return None
                raise AuditError(
                    f"host {self.host}: the store's checkpoint at size {latest.size} is not this "
                    "host's tree (edited behind colibri's back?)"
                )
            checkpoint = Checkpoint(
                self.host,
                head,
                root,
                _after(max(filter(None, [last_time, latest.signed_at if latest else None]), default=None)),
            )
            signed = note.sign(checkpoint, public, private.sign)
            repo.add_checkpoint(
                AuditCheckpoint(
                    host=self.host,
                    size=head,
                    root=root.hex(),
                    key_id=public.key_id,
                    note=signed,
                    signed_at=checkpoint.time,
                )
            )
        memory["self"] = _remembered(tree, leaf, checkpoint.time)
        self.keys.remember(memory)
        self._signed_size = tree.size
        return Signed(self.host, head, root.hex(), public.key_id, checkpoint.time)

    def _own_latest(self, repo: TrailRepo, public: PublicKey) -> AuditCheckpoint | None:
        """The largest checkpoint row of this host that this host signed (its note opens under its
        key and says what the row says); a row under its name it did not sign (another host's
        database credentials, or an edit) is reported, and ignored: the signer goes by its memory."""
        newest = repo.recent_checkpoints(self.host, 1)  # almost always its own: 64 rows only when not
        if not newest:
            return None
        if self._signed_here(newest[0], public):
            return newest[0]
        for row in [newest[0], *repo.recent_checkpoints(self.host, OWN_ROWS)[1:]]:
            if self._signed_here(row, public):
                return row
            if (row.size, row.root) not in self._reported:
                self._reported.add((row.size, row.root))
                log.error(
                    "audit: the store's checkpoint row %s@%d (key %s) was not signed by this host's key: "
                    "ignored (written with another host's database credentials?)",
                    self.host,
                    row.size,
                    row.key_id[:16],
                )
        return None

    def _signed_here(self, row: AuditCheckpoint, public: PublicKey) -> bool:
        try:
            checkpoint, _ = note.open_note(row.note, [public])
        except BadNote:
            return False
        return (checkpoint.host, checkpoint.size, checkpoint.root.hex()) == (self.host, row.size, row.root)

    # ---- cosigning -----------------------------------------------------------------------------
    def cosign(self) -> tuple[list[Signed], list[str]]:
        """Cosign every other host's newest checkpoint that extends what this host cosigned before;
        (the cosigned, the refusals' reasons)."""
        done: list[Signed] = []
        refused: list[str] = []
        with self.store.session() as session:
            if not TrailRepo(session).newest_checkpoints(other_than=self.host):
                return done, refused  # one host: nothing to witness (and no key made for it)
        with self.keys.locked():
            private, public = self._key()
            memory = self.keys.memory()
            peers: dict[str, Any] = memory.setdefault("peers", {})
            with self.store.session() as session:
                repo = TrailRepo(session)
                keys = repo.public_keys()
                for newest in repo.newest_checkpoints(other_than=self.host):
                    host = newest.host
                    peer = peers.get(host, {})
                    row = self._signed_row(repo, newest, peer, keys)
                    if peer.get("size") == row.size and peer.get("root") == row.root:
                        continue
                    if peer.get("refused") == [row.size, row.root]:
                        continue  # refused (and recorded) once already
                    try:
                        signed = self._cosign_one(repo, host, row, peer, keys, private, public)
                    except _Partial as progress:
                        peers[host] = progress.peer
                        continue
                    except (AuditError, BadNote) as exc:
                        reason = str(exc)
                        log.error("audit: refusing to cosign host %s at size %d: %s", host, row.size, reason)
                        self._record(
                            session,
                            Event(
                                "audit.cosign",
                                f"host:{host}",
                                outcome="refused",
                                detail={"size": row.size, "reason": reason[:400]},
                            ),
                        )
                        peer["refused"] = [row.size, row.root]
                        peers[host] = peer
                        refused.append(f"host {host} at size {row.size}: {reason}")
                        continue
                    peers[host] = signed[1]
                    done.append(signed[0])
            self.keys.remember(memory)
        return done, refused

    def _signed_row(
        self, repo: TrailRepo, newest: AuditCheckpoint, peer: dict[str, Any], keys: list[AuditKey]
    ) -> AuditCheckpoint:
        """The largest of the host's checkpoint rows its trusted keys signed: a row under its name
        it did not sign (another host's database credentials) is reported and passed over, else it
        would stay the newest and stop every later cosignature; ``newest`` if none is."""
        trusted = _peer_keys(newest.host, peer.get("keys"), keys)
        for row in [newest, *repo.recent_checkpoints(newest.host, OWN_ROWS)]:
            try:
                checkpoint, _ = note.open_note(row.note, trusted)
            except BadNote:
                if (row.host, row.size, row.root) not in self._reported_peers:
                    self._reported_peers.add((row.host, row.size, row.root))
                    log.error("audit: checkpoint row %s@%d is not signed by that host's key: passed over",
                              row.host, row.size)  # fmt: skip
                continue
            if (checkpoint.size, checkpoint.root.hex()) == (row.size, row.root):
                return row
        return newest

    def _cosign_one(
        self,
        repo: TrailRepo,
        host: str,
        row: AuditCheckpoint,
        peer: dict[str, Any],
        keys: Iterable[AuditKey],
        private: Ed25519PrivateKey,
        public: PublicKey,
    ) -> tuple[Signed, dict[str, Any]]:
        trusted, retired = _peer_chain(host, peer.get("keys"), keys)
        checkpoint, signer = note.open_note(row.note, trusted)
        if signer.key_id in retired and checkpoint.time > retired[signer.key_id]:
            raise AuditError(f"signed at {checkpoint.time} by key {signer.key_id}, retired at {retired[signer.key_id]}")
        if checkpoint.size != row.size or checkpoint.root.hex() != row.root:
            raise AuditError("the checkpoint row does not match its signed note")
        tree, leaf, _ = _range(peer if "range" in peer else None)
        if checkpoint.size < tree.size:
            raise AuditError(
                f"its newest checkpoint is older than size {tree.size}, cosigned before: "
                "entries deleted or an old checkpoint replayed"
            )
        cosigned = tree.size
        partial = peer.get("partial")
        if partial and cosigned <= int(partial["size"]) <= checkpoint.size:  # a long fold goes on
            tree, leaf, _ = _range(partial)
        upto = min(checkpoint.size, tree.size + COSIGN_STEP)
        try:
            leaf = _fold(repo, host, tree, leaf, upto)
        except AuditError as exc:
            raise AuditError(f"not consistent with size {cosigned} cosigned before ({exc})") from None
        if upto < checkpoint.size:  # the rest in the next runs: the database thread is never held long
            raise _Partial(peer | {"partial": _remembered(tree, leaf, timestamp())})
        if tree.root() != checkpoint.root:
            raise AuditError(
                f"its root is not the tree of its entries extending size {peer.get('size', 0)} "
                "cosigned before: its history was rewritten"
            )
        now = timestamp()
        signature = private.sign(note.cosign_message(checkpoint, now))
        repo.add_cosignature(
            AuditCosignature(
                host=host,
                size=checkpoint.size,
                witness=self.host,
                root=row.root,
                key_id=public.key_id,
                signature=base64.b64encode(signature).decode(),
                signed_at=now,
            )
        )
        remembered = _remembered(tree, leaf, now) | {"keys": sorted(k.vkey for k in trusted)}
        return Signed(host, checkpoint.size, row.root, public.key_id, now), remembered
