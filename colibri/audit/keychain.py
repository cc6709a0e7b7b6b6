"""A host's key chain: each rotation's new key endorsed by the key it retires, at the rotation's time.

Shared by the offline verifier (a bundle's keys) and the witness (another host's keys in the store).
Pure, like the rest of ``colibri.audit``.  A key endorses at most one successor: a key that endorses
two (a leaked retired key endorsing a second, backdated one) is a forked chain and refused.  The walk
is linear: each endorsement is checked once, when its endorser becomes trusted, in any listing order.
"""

from collections.abc import Iterable
from dataclasses import dataclass

from colibri.audit import note
from colibri.audit.note import BadNote, PublicKey

Ref = tuple[str, str]  # (key name, key id)


@dataclass(frozen=True)
class Endorsement:
    key: PublicKey  # the new key
    by: str  # the key id of the key it retires (of the same host)
    time: str
    signature: bytes


def follow(trusted: dict[Ref, PublicKey], endorsements: Iterable[Endorsement]) -> dict[Ref, tuple[PublicKey, str]]:
    """Add to ``trusted`` every key endorsed by a trusted one, along chains; per endorsing key its
    successor and the time it endorsed it (its retirement).  BadNote on a forked chain."""
    waiting: dict[Ref, list[Endorsement]] = {}
    for endorsement in endorsements:
        waiting.setdefault((endorsement.key.name, endorsement.by), []).append(endorsement)
    successors: dict[Ref, tuple[PublicKey, str]] = {}
    queue = list(trusted)
    while queue:
        ref = queue.pop()
        by = trusted[ref]
        for endorsement in waiting.pop(ref, ()):
            new = endorsement.key
            message = note.endorse_message(new, endorsement.time)
            if new.key_id == by.key_id or not by.verify(endorsement.signature, message):
                continue  # a key endorsing itself means nothing; a bad signature endorses nothing
            before = successors.get(ref)
            if before is not None and before[0].key_id != new.key_id:
                first, second = sorted([before, (new, endorsement.time)], key=lambda s: (s[1], s[0].key_id))
                raise BadNote(
                    f"key {by.key_id} of host {by.host} endorses two successors, {first[0].key_id} at {first[1]} "
                    f"and {second[0].key_id} at {second[1]}: a forked key chain (a retired key leaked?)"
                )
            if before is None or endorsement.time < before[1]:
                successors[ref] = (new, endorsement.time)  # endorsed twice: retired at the earlier
            new_ref = (new.name, new.key_id)
            if new_ref not in trusted:
                trusted[new_ref] = new
                queue.append(new_ref)
    return successors
