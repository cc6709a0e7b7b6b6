"""The repository's signed documents (issue 13): ``root.json`` and ``index.json``; pure.

Both are ``{"signed": {...}, "signatures": [{"keyid", "sig"}]}`` (TUF's envelope), the signature
over the canonical bytes of ``signed``.  ``root.json`` is signed by the ROOT key (kept offline;
hosts pin its public key): its ``version``, the delegated signing ``keys`` (each with its public
key and ``expires``) and the ``revoked`` key ids.  ``index.json`` is signed by one delegated key:
a ``version`` that only grows, an ``expires``, and per skill per version the bundle's digest and
size, the manifest's digest, the tier (``first-party``) and the capabilities.
"""

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from colibri.errors import SignatureRefused, SupplyError
from colibri.supply import docs, keys
from colibri.supply import manifest as mf

MAX_ROOT = 256 << 10
MAX_INDEX = 8 << 20
MAX_KEYS = 64
MAX_SKILLS = 10_000
MAX_VERSIONS = 256
FIRST_PARTY = "first-party"
DIGEST = re.compile(r"sha256:[0-9a-f]{64}", re.ASCII)


@dataclass(frozen=True)
class Delegated:
    key_id: str
    public: bytes
    expires: datetime


@dataclass(frozen=True)
class Root:
    version: int
    keys: dict[str, Delegated]
    revoked: frozenset[str]
    raw: bytes

    def usable(self, key_id: str, now: datetime, what: str) -> Delegated:
        """The delegated key ``key_id`` if it is neither revoked nor expired (SignatureRefused)."""
        if key_id in self.revoked:
            raise SignatureRefused(f"{what}: signed by revoked key {key_id}")
        found = self.keys.get(key_id)
        if found is None:
            raise SignatureRefused(f"{what}: signed by unknown key {mf.shown(key_id)} (the root delegates no such key)")
        if found.expires <= now:
            raise SignatureRefused(
                f"{what}: signed by key {key_id}, whose delegation expired {docs.stamp(found.expires)}"
            )
        return found


@dataclass(frozen=True)
class Entry:
    name: str
    version: str
    digest: str
    size: int
    manifest: str
    tier: str
    capabilities: tuple[str, ...]

    @property
    def bundle_path(self) -> str:
        """Where the repository holds this version's bundle (its detached signature: ``+ ".sig"``)."""
        return f"bundles/{self.name}-{self.version}.tar"

    def document(self) -> dict[str, Any]:
        return {
            "digest": self.digest,
            "size": self.size,
            "manifest": self.manifest,
            "tier": self.tier,
            "capabilities": list(self.capabilities),
        }


@dataclass(frozen=True)
class Index:
    version: int
    expires: datetime
    skills: dict[str, dict[str, Entry]]
    raw: bytes
    key_id: str

    def newest(self, name: str) -> Entry | None:
        versions = self.skills.get(name)
        if not versions:
            return None
        return versions[max(versions, key=mf.version_key)]


def envelope(signed: dict[str, Any], signatures: list[dict[str, str]]) -> bytes:
    return docs.dump({"signed": signed, "signatures": signatures})


def _open(data: bytes, limit: int, kind: str) -> tuple[dict[str, Any], bytes, list[Any]]:
    doc = docs.load(data, limit, f"{kind}.json")
    signed = doc.get("signed")
    signatures = doc.get("signatures")
    if not isinstance(signed, dict) or signed.get("type") != kind or not isinstance(signatures, list):
        raise SupplyError(f"{kind}.json is not a colibri {kind} document")
    if not signatures or len(signatures) > 8:
        raise SignatureRefused(f"{kind}.json carries no signature (or more than 8)")
    return signed, docs.dump(signed), signatures


def _version(signed: dict[str, Any], what: str) -> int:
    value = docs.field(signed, "version", int, what)
    if value < 1 or value >= 2**53:
        raise SupplyError(f"{what}: version {value} is out of range")
    return int(value)


def parse_root(data: bytes, root_key: bytes | None) -> Root:
    """root.json verified by the pinned root public key (SignatureRefused, SupplyError); with
    None, read unverified (the signing machine reading its own repository: hosts verify)."""
    signed, payload, signatures = _open(data, MAX_ROOT, "root")
    if root_key is not None:
        root_id = keys.key_id(root_key)
        mine = [s for s in signatures if isinstance(s, dict) and s.get("keyid") == root_id]
        if not mine:
            raise SignatureRefused(f"root.json is not signed by the pinned root key {root_id}")
        keys.verify(root_key, "root", payload, mine[0].get("sig"), "root.json")
    version = _version(signed, "root.json")
    found = signed.get("keys")
    revoked = signed.get("revoked")
    if not isinstance(found, dict) or len(found) > MAX_KEYS or not isinstance(revoked, list):
        raise SupplyError("root.json: keys must be an object and revoked a list")
    delegated: dict[str, Delegated] = {}
    for key_id, item in found.items():
        if not isinstance(item, dict):
            raise SupplyError(f"root.json: key {mf.shown(key_id)} is not an object")
        public = keys.decode_public(item.get("public"), f"root.json key {mf.shown(key_id)}")
        if keys.key_id(public) != key_id:
            raise SupplyError(f"root.json: key {mf.shown(key_id)} is not the id of its public key")
        delegated[key_id] = Delegated(key_id, public, docs.parse_time(item.get("expires"), f"root.json key {key_id}"))
    if not all(isinstance(k, str) and len(k) <= 64 for k in revoked) or len(revoked) > 1024:
        raise SupplyError("root.json: revoked must list key ids")
    return Root(version, delegated, frozenset(revoked), data)


def root_document(version: int, delegated: list[Delegated], revoked: list[str]) -> dict[str, Any]:
    return {
        "type": "root",
        "version": version,
        "keys": {
            d.key_id: {"public": keys.public_line(d.public).split()[1], "expires": docs.stamp(d.expires)}
            for d in delegated
        },
        "revoked": sorted(set(revoked)),
    }


def parse_index(data: bytes, root: Root | None, now: datetime) -> Index:
    """index.json verified by a key ``root`` delegates, unrevoked and unexpired; its expiry is NOT
    judged here (the caller decides: a stale index is still shown, never installed from).  With
    None, read unverified (the signing machine re-signing its own index after a rotation)."""
    signed, payload, signatures = _open(data, MAX_INDEX, "index")
    first = signatures[0]
    if not isinstance(first, dict):
        raise SignatureRefused("index.json: a signature is not an object")
    key_id = str(first.get("keyid"))[:80]
    if root is not None:
        key = root.usable(key_id, now, "index.json")
        keys.verify(key.public, "index", payload, first.get("sig"), "index.json")
    version = _version(signed, "index.json")
    expires = docs.parse_time(signed.get("expires"), "index.json expires")
    skills = signed.get("skills")
    if not isinstance(skills, dict) or len(skills) > MAX_SKILLS:
        raise SupplyError(f"index.json: skills must be an object of at most {MAX_SKILLS}")
    table: dict[str, dict[str, Entry]] = {}
    for name, versions in skills.items():
        mf.check_name(name)
        if not isinstance(versions, dict) or not versions or len(versions) > MAX_VERSIONS:
            raise SupplyError(f"index.json: skill {name} has no versions (or more than {MAX_VERSIONS})")
        table[name] = {v: _entry(name, v, item) for v, item in versions.items()}
    return Index(version, expires, table, data, key_id)


def _entry(name: str, version: str, item: object) -> Entry:
    mf.check_version(version, name)
    what = f"index.json: {name}@{version}"
    if not isinstance(item, dict):
        raise SupplyError(f"{what} is not an object")
    digest = docs.field(item, "digest", str, what)
    manifest = docs.field(item, "manifest", str, what)
    for value in (digest, manifest):
        if not DIGEST.fullmatch(value):
            raise SupplyError(f"{what}: a digest is not sha256:<64 hex digits>")
    size = docs.field(item, "size", int, what)
    tier = docs.field(item, "tier", str, what)
    if tier != FIRST_PARTY:
        raise SupplyError(f"{what}: tier {mf.shown(tier)} (a first-party index holds first-party skills only)")
    capabilities = mf.check_capabilities(item.get("capabilities"), name)
    return Entry(name, version, digest, int(size), manifest, tier, capabilities)


def index_document(version: int, expires: datetime, entries: list[Entry]) -> dict[str, Any]:
    skills: dict[str, dict[str, Any]] = {}
    for entry in entries:
        skills.setdefault(entry.name, {})[entry.version] = entry.document()
    return {"type": "index", "version": version, "expires": docs.stamp(expires), "skills": skills}
