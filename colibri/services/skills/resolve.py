"""The resolver (issue 13): skill references → verified files in a staging directory.

What part S2 (spawn-agent --skill) calls.  ``resolve`` fetches and verifies the repository's root
and index (supply/chain.py's order), picks each skill (the newest version unless named), refuses
what the tenant's tier may not have, verifies every bundle in memory, and only then writes each
under ``staging/<name>/``: all or nothing (a refusal leaves nothing it wrote).  An unreachable
repository or an expired index refuses NEW installs (SupplyUnavailable, exit 22) and touches
nothing else: running agents keep what they have.
"""

import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from colibri.adapters.skill_repo import SkillRepository
from colibri.adapters.skill_trust import TrustStore
from colibri.errors import BundleRefused, SupplyError, SupplyUnavailable, TierRefused
from colibri.services.skills import trusted
from colibri.store.skills import Installed
from colibri.supply import bundle, chain, docs
from colibri.supply import manifest as mf
from colibri.supply.metadata import FIRST_PARTY

COMMUNITY = "community"
TIERS = ("paid", "community")
MAX_REFS = 64
MAX_TOTAL = 4 * bundle.MAX_UNPACKED
"""The most bytes one resolve holds in memory and writes, all its skills together (128 MiB)."""


@dataclass(frozen=True)
class SkillRef:
    name: str
    version: str | None  # None = the newest in the index

    @classmethod
    def parse(cls, text: str) -> "SkillRef":
        """``NAME[@VERSION]`` (SupplyError on bad text)."""
        name, sep, version = text.partition("@")
        mf.check_name(name)
        if sep:
            mf.check_version(version, name)
        return cls(name, version if sep else None)

    def __str__(self) -> str:
        return f"{self.name}@{self.version}" if self.version else self.name


@dataclass(frozen=True)
class VerifiedSkill:
    name: str
    version: str
    digest: str  # "sha256:<hex>" of the bundle file
    source: str  # "first-party" | "community"
    capabilities: tuple[str, ...]
    root: Path  # a staging dir holding the verified files, laid out as the skill dir


def clash(name: str, other_tenants: Sequence[str]) -> str | None:
    """Another tenant whose private space the skill name would read as (its id, or ``<id>-...``)."""
    for other in other_tenants:
        low = other.lower()
        if name == low or name.startswith(low + "-"):
            return other
    return None


class SkillResolver:
    def __init__(self, repository: SkillRepository | None, trust: TrustStore, now: Callable[[], datetime]) -> None:
        self.repository = repository
        self.trust = trust
        self.now = now

    def available(self) -> bool:
        """A repository is configured and a root is pinned (PermissionDenied: an unsafe trust store)."""
        # a trust store that is not root-only raises (PermissionDenied): never a silent False
        return self.repository is not None and self.trust.root_key() is not None

    def resolve(
        self, refs: Sequence[SkillRef], *, tier: str, other_tenants: Sequence[str], staging: Path
    ) -> list[VerifiedSkill]:
        """All or nothing; SupplyError (exit 22) naming the skill and the reason on any refusal."""
        if tier not in TIERS:
            raise SupplyError(f"unknown tenant tier '{mf.shown(tier)}': paid or community")
        if len(refs) > MAX_REFS:
            raise SupplyError(f"more than {MAX_REFS} skills asked for")
        names = [ref.name for ref in refs]
        for ref in refs:
            if names.count(ref.name) > 1:
                raise SupplyError(f"skill {ref.name} is asked for twice")
            other = clash(ref.name, other_tenants)
            if other is not None:
                raise TierRefused(f"skill {ref.name} is named like tenant {other}'s private space: refused")
        if not refs:
            return []
        if self.repository is None:
            raise SupplyUnavailable(
                "no skills repository is configured (skills_repository): new skills cannot be installed"
            )
        now = self.now()
        asked = ", ".join(str(ref) for ref in refs)
        try:
            with self.trust.locked():
                state = trusted.current(self.repository, self.trust, now)
        except SupplyUnavailable as exc:
            raise SupplyUnavailable(
                f"skill {asked}: {exc.message}: new skill installs are blocked (running agents are not touched)"
            ) from None
        except SupplyError as exc:  # the same class (the reason), naming the skills asked for
            raise type(exc)(f"skill {asked}: {exc.message}") from None
        if state.expired(now):
            raise SupplyUnavailable(
                f"skill {asked}: the skills index (version {state.index.version}) expired "
                f"{docs.stamp(state.index.expires)}: "
                "new skill installs are blocked until a fresh index is published"
            )
        picked: list[tuple[SkillRef, bundle.Unpacked, str, str]] = []
        total = 0
        for ref in refs:
            picked.append(self._one(ref, tier, state, now))
            total += sum(len(body) for body in picked[-1][1].files.values())
            if total > MAX_TOTAL:
                raise BundleRefused(f"skill {ref}: the skills asked for hold more than {MAX_TOTAL} bytes together")
        return self._extract(picked, staging)

    def unvouched(self, kept: Sequence[Installed]) -> list[str]:
        """The names among ``kept`` (skills installed in a jail, about to be kept on a respawn) that
        this host's trust no longer vouches for, so they must be fetched and verified again.

        First-party: the index must list the skill with its recorded digests, and its detached
        signature must verify under the root (a key it delegates, unrevoked and unexpired).  With
        the repository answering, that is the fresh root and index (expired or not: an expired
        index blocks new installs, not this check) and the signature fetched now.  With it
        unreachable, the last-known-good pair this host verified (a skill it has seen withdrawn
        or a key it has seen revoked is not kept) and the signature kept when the skill was last
        verified online (trust store ``sigs/``); without such a signature, or without a
        last-known-good pair, nothing is vouched for.  A repository that answers but
        does not verify (a rollback, a bad root) raises, as an install would.  Community: still
        allowed with its digest."""
        now = self.now()
        state, fresh = self._state(now) if any(k.source == FIRST_PARTY for k in kept) else (None, False)
        found: list[str] = []
        for skill in kept:
            if skill.source == COMMUNITY:
                vouched = self._allowed(SkillRef(skill.name, skill.version)) == skill.digest
            elif skill.source != FIRST_PARTY:
                vouched = True  # builtin: colibri's own mother, checked against the shipped files
            else:
                vouched = state is not None and self._signed(skill, state, fresh, now)
            if not vouched:
                found.append(skill.name)
        return found

    def _state(self, now: datetime) -> tuple[trusted.Trusted | None, bool]:
        """The root and index to judge kept skills by, and whether they were fetched now."""
        if self.repository is not None:
            try:
                with self.trust.locked():
                    return trusted.current(self.repository, self.trust, now), True
            except SupplyUnavailable:
                pass
        try:
            return trusted.last_known_good(self.trust, now), False
        except SupplyError:  # it does not verify any more (its key's delegation expired): nothing vouched
            return None, False

    def _signed(self, skill: Installed, state: trusted.Trusted, fresh: bool, now: datetime) -> bool:
        entry = (state.index.skills.get(skill.name) or {}).get(skill.version)
        if entry is None or entry.digest != skill.digest or entry.manifest != skill.manifest_digest:
            return False
        what = f"skill {skill.name}@{skill.version}"
        try:
            if fresh:  # the repository answered just now: a signature it cannot serve is not one
                assert self.repository is not None
                sig = self.repository.fetch(entry.bundle_path + ".sig", chain.MAX_SIG)
                chain.check_signature(sig, entry.manifest, state.root, now, what)
                if self.trust.signature(entry.digest, chain.MAX_SIG) != sig:
                    self.trust.keep_signature(entry.digest, sig)
                return True
            kept_sig = self.trust.signature(entry.digest, chain.MAX_SIG)
            if kept_sig is None:  # nothing to say which key signed it: it may be one this host saw revoked
                return False
            chain.check_signature(kept_sig, entry.manifest, state.root, now, what)
        except SupplyError:
            return False
        return True

    def _one(
        self, ref: SkillRef, tier: str, state: trusted.Trusted, now: datetime
    ) -> tuple[SkillRef, bundle.Unpacked, str, str]:
        assert self.repository is not None
        versions = state.index.skills.get(ref.name)
        if versions:
            entry = versions.get(ref.version) if ref.version else state.index.newest(ref.name)
            if entry is None:
                raise SupplyError(f"skill {ref}: the index has no such version ({', '.join(sorted(versions))})")
            if entry.size > bundle.MAX_BUNDLE:
                raise BundleRefused(f"skill {ref}: the bundle is larger than {bundle.MAX_BUNDLE} bytes (a huge bundle)")
            path = entry.bundle_path
            data = self.repository.fetch(path, entry.size)
            sig = self.repository.fetch(path + ".sig", chain.MAX_SIG)
            unpacked = chain.verify_bundle(entry, data, sig, state.root, now)
            self.trust.keep_signature(entry.digest, sig)  # for a respawn while the repository is away
            return ref, unpacked, entry.digest, FIRST_PARTY
        allowed = self._allowed(ref)
        if allowed is None:
            raise SupplyError(f"skill {ref} is not in the first-party index")
        if tier != COMMUNITY:
            raise TierRefused(f"skill {ref} is a community skill: a paid tenant gets first-party skills only")
        pinned = self.trust.community_bundle(allowed)
        if pinned is None:
            raise SupplyError(f"skill {ref}: the allowed bundle is missing from the trust store (allow it again)")
        return ref, chain.verify_pinned(ref.name, allowed, pinned), allowed, COMMUNITY

    def _allowed(self, ref: SkillRef) -> str | None:
        """The digest the operator pinned for ``ref`` (the newest allowed version unless named)."""
        skills = self.trust.community().get("skills")
        versions = skills.get(ref.name) if isinstance(skills, dict) else None
        if not isinstance(versions, dict) or not versions:
            return None
        try:
            version = ref.version or max(versions, key=mf.version_key)
        except ValueError:
            return None
        item = versions.get(version)
        digest = item.get("digest") if isinstance(item, dict) else None
        return digest if isinstance(digest, str) else None

    def _extract(self, picked: list[tuple[SkillRef, bundle.Unpacked, str, str]], staging: Path) -> list[VerifiedSkill]:
        if not staging.is_dir() or staging.is_symlink():
            raise SupplyError(f"the staging directory {staging} does not exist")
        made: list[Path] = []
        found: list[VerifiedSkill] = []
        try:
            for ref, unpacked, digest, source in picked:
                dest = staging / ref.name
                if dest.exists() or dest.is_symlink():
                    raise SupplyError(f"skill {ref.name}: {dest} already exists in the staging directory")
                made.append(dest)
                bundle.extract(unpacked, dest)
                m = unpacked.manifest
                found.append(VerifiedSkill(m.name, m.version, digest, source, m.capabilities, dest))
        except OSError as exc:
            for dest in made:
                shutil.rmtree(dest, ignore_errors=True)
            raise SupplyError(f"cannot write the skills into {staging}: {exc.strerror}") from None
        except BaseException:
            for dest in made:
                shutil.rmtree(dest, ignore_errors=True)
            raise
        return found
