"""A host's side of the skills supply chain (issue 13): pin the root, list, show, verify, allow.

``trust`` and ``allow`` change this host's trust store and record their audit entry (same
command, same store session; the trust store is written first, and a failed entry fails the
command).  ``list`` and ``show`` read the repository's index as this host trusts it: fetched and
verified now, else the last-known-good copy with why it is not fresh, and whether it is expired.
"""

import hashlib
import shutil
import tempfile
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from colibri.adapters.skill_repo import SkillRepository
from colibri.adapters.skill_trust import TrustStore
from colibri.errors import Conflict, NotFound, SupplyError, SupplyUnavailable
from colibri.services.skills import trusted
from colibri.services.skills.resolve import COMMUNITY, SkillRef, SkillResolver, VerifiedSkill
from colibri.store.audit_hooks import record
from colibri.store.db import Store
from colibri.supply import bundle, chain, docs, keys
from colibri.supply import manifest as mf
from colibri.supply.metadata import FIRST_PARTY


class SkillsService:
    def __init__(
        self, store: Store, trust: TrustStore, repository: SkillRepository | None, now: Callable[[], datetime]
    ) -> None:
        self.store = store
        self.trust = trust
        self.repository = repository
        self.now = now

    # ---- the pinned root -------------------------------------------------------------------------
    def trust_root(self, line: bytes, replace: bool) -> dict[str, Any]:
        """Pin ``line`` (a root public key file) as this host's ONE root key."""
        raw = keys.parse_public_line(line, "the root key file")
        key_id = keys.key_id(raw)
        with self.trust.locked():
            current = self.trust.root_key()
            if current is not None:
                old = keys.key_id(keys.parse_public_line(current, "the pinned root key"))
                if old == key_id:
                    return {"root_key": key_id, "changed": False}
                if not replace:
                    raise Conflict(f"another root key ({old}) is pinned: pass --replace to pin {key_id} instead")
            with self.store.session() as session:  # the entry first: a pin not recorded is no pin
                record(session, "skills.trust", f"skills-root:{key_id}", replaced=current is not None)
                if current is not None:
                    self.trust.forget()  # what was seen under the old root says nothing of the new one
                self.trust.pin(keys.public_line(raw).encode())
        return {"root_key": key_id, "changed": True}

    # ---- what the repository holds -----------------------------------------------------------------
    def status(self) -> tuple[trusted.Trusted | None, dict[str, Any]]:
        state, reason = trusted.current_or_last(self.repository, self.trust, self.now)
        now = self.now()
        doc: dict[str, Any] = {
            "repository": self.repository.location if self.repository else None,
            "root_key": self._root_id(),
            "fresh": bool(state and state.fresh),
            "reason": reason,
            "index_version": state.index.version if state else None,
            "expires": docs.stamp(state.index.expires) if state else None,
            "expired": state.expired(now) if state else None,
            "signed_by": state.index.key_id if state else None,
        }
        return state, doc

    def _root_id(self) -> str | None:
        line = self.trust.root_key()
        return keys.key_id(keys.parse_public_line(line, "the pinned root key")) if line else None

    def listing(self) -> dict[str, Any]:
        state, doc = self.status()
        skills: list[dict[str, Any]] = []
        if state is not None:
            for name in sorted(state.index.skills):
                newest = state.index.newest(name)
                assert newest is not None
                versions = sorted(state.index.skills[name], key=mf.version_key)
                skills.append(_row(name, newest.version, versions, FIRST_PARTY, newest.digest, newest.capabilities))
        for name, allowed in sorted(self._community().items()):
            ordered = sorted(allowed, key=mf.version_key)
            top = allowed[ordered[-1]]
            skills.append(
                _row(name, ordered[-1], ordered, COMMUNITY, top["digest"], tuple(top.get("capabilities", ())))
            )
        return {**doc, "skills": skills}

    def show(self, name: str) -> dict[str, Any]:
        mf.check_name(name)
        state, doc = self.status()
        found: list[dict[str, Any]] = []
        if state is not None:
            for version, entry in sorted(
                state.index.skills.get(name, {}).items(), key=lambda kv: mf.version_key(kv[0])
            ):
                found.append({"version": version, "source": FIRST_PARTY, **entry.document()})
        for version, item in sorted(self._community().get(name, {}).items(), key=lambda kv: mf.version_key(kv[0])):
            found.append({"version": version, "source": COMMUNITY, **item})
        if not found:
            raise NotFound(f"skill not found: {name} (not in the index this host trusts, nor allowed as community)")
        return {"name": name, "versions": found, "index": doc}

    def _community(self) -> dict[str, dict[str, dict[str, Any]]]:
        skills = self.trust.community().get("skills", {})
        return skills if isinstance(skills, dict) else {}

    # ---- verify --------------------------------------------------------------------------------------
    def verify(self, refs: list[SkillRef], tier: str) -> list[VerifiedSkill]:
        """Verify each skill in full (into a scratch directory, removed after): what an install would do."""
        resolver = SkillResolver(self.repository, self.trust, self.now)
        scratch = Path(tempfile.mkdtemp(prefix="colibri-skills-verify-"))
        try:
            return resolver.resolve(refs, tier=tier, other_tenants=[], staging=scratch)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def verify_file(self, data: bytes, sig: bytes | None) -> dict[str, Any]:
        """A local bundle (and its .sig) checked against the root this host trusts."""
        name = bundle.name_of(data)
        unpacked = bundle.unpack(data, name)
        m = unpacked.manifest
        manifest_digest = "sha256:" + hashlib.sha256(unpacked.manifest_bytes).hexdigest()
        signed_by = None
        if sig is not None:
            state, doc = self.status()
            if state is None:
                raise SupplyUnavailable(f"no trusted root to check the signature against: {doc['reason']}")
            signed_by = chain.check_signature(
                sig, manifest_digest, state.root, self.now(), f"skill {m.name}@{m.version}"
            )
        return {
            "name": m.name,
            "version": m.version,
            "digest": bundle.digest(data),
            "manifest": manifest_digest,
            "capabilities": list(m.capabilities),
            "files": len(m.files),
            "signed_by": signed_by,
        }

    # ---- community ------------------------------------------------------------------------------------
    def allow(self, name: str, data: bytes, digest: str | None) -> dict[str, Any]:
        """Allow a community skill, pinned by its bundle's digest (checked in full first)."""
        mf.check_name(name)
        found = bundle.digest(data)
        if digest is not None and digest != found:
            raise SupplyError(f"skill {name}: the bundle's digest is {found}, not the {digest} given")
        m = bundle.unpack(data, name).manifest
        with self.trust.locked():
            allowed = self.trust.community()
            skills = allowed.setdefault("skills", {})
            versions = skills.setdefault(name, {})
            old = versions.get(m.version)
            if old is not None and old.get("digest") != found:
                raise Conflict(
                    f"skill {name}@{m.version} is allowed with another digest ({str(old.get('digest'))[:19]}...)"
                )
            item = {"digest": found, "capabilities": list(m.capabilities), "allowed_at": docs.stamp(self.now())}
            versions[m.version] = old or item
            with self.store.session() as session:  # the entry first: an allow not recorded is no allow
                record(session, "skills.allow", f"skill:{name}", version=m.version, digest=found, again=old is not None)
                self.trust.allow(allowed, found, data)
        return {"name": name, "version": m.version, "digest": found, "source": COMMUNITY, "changed": old is None}


def _row(
    name: str, version: str, versions: list[str], source: str, digest: str, caps: tuple[str, ...]
) -> dict[str, Any]:
    return {
        "name": name,
        "version": version,
        "versions": versions,
        "source": source,
        "digest": digest,
        "capabilities": list(caps),
    }
