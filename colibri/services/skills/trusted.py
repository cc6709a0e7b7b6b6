"""The repository's root and index as this host trusts them (issue 13): fetched and verified
through supply/chain.py against the trust store, which then remembers them (the highest versions
and the last-known-good pair); or the last-known-good pair, offline."""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from colibri.adapters.skill_repo import SkillRepository
from colibri.adapters.skill_trust import TrustStore
from colibri.errors import SupplyError, SupplyUnavailable
from colibri.supply import chain, keys
from colibri.supply.metadata import MAX_INDEX, MAX_ROOT, Index, Root, parse_index, parse_root


@dataclass(frozen=True)
class Trusted:
    root: Root
    index: Index
    fresh: bool  # fetched and verified now (False: the last-known-good pair, offline)

    def expired(self, now: datetime) -> bool:
        return chain.expired(self.index, now)


def pinned_key(trust: TrustStore) -> bytes:
    line = trust.root_key()
    if line is None:
        raise SupplyUnavailable("no skills root key is pinned on this host (colibri skills trust ROOT.pub)")
    return keys.parse_public_line(line, "the pinned root key")


def current(repository: SkillRepository, trust: TrustStore, now: datetime) -> Trusted:
    """Fetch and verify root.json and index.json; remember them (call with ``trust.locked()``)."""
    key = pinned_key(trust)
    root_bytes = repository.fetch("root.json", MAX_ROOT)
    index_bytes = repository.fetch("index.json", MAX_INDEX)
    seen = trust.seen()
    root = parse_root(root_bytes, key)
    chain.check_root(seen, root)
    index = parse_index(index_bytes, root, now)
    chain.check_index(seen, index)
    after = chain.seen_after(root, index)
    if after != seen or trust.last_known_good() is None:  # nothing new: no write (no fsync) per resolve
        trust.remember(after, root_bytes, index_bytes)
    return Trusted(root, index, fresh=True)


def last_known_good(trust: TrustStore, now: datetime) -> Trusted | None:
    found = trust.last_known_good()
    if found is None:
        return None
    root = parse_root(found[0], pinned_key(trust))
    return Trusted(root, parse_index(found[1], root, now), fresh=False)


def current_or_last(
    repository: SkillRepository | None, trust: TrustStore, now: Callable[[], datetime]
) -> tuple[Trusted | None, str | None]:
    """What ``skills list`` shows: the fresh pair, else the last-known-good with why it is not fresh
    (the repository unreachable, or what it serves refused: ``verify`` and installs raise that)."""
    reason: str | None = None
    if repository is not None:
        try:
            with trust.locked():
                return current(repository, trust, now()), None
        except SupplyError as exc:  # unreachable, or refused (a rollback, a bad signature): shown, not raised
            reason = exc.message
    else:
        reason = "no skills repository is configured (skills_repository)"
    try:
        return last_known_good(trust, now()), reason
    except SupplyError as exc:
        return None, f"{reason}; the last-known-good index does not verify: {exc.message}"
