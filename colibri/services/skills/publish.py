"""The operator's side of the skills supply chain (issue 13): keys, build, sign, the root, publish.

These run on the signing machine, which holds the root and signing keys offline from the hosts;
only the repository directory it writes (root.json, index.json, bundles/) is copied to where the
hosts fetch it.  Nothing here touches a host's trust store.
"""

import hashlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from colibri.adapters.skill_repo import DirectoryRepository
from colibri.errors import Conflict, SupplyError, SupplyUnavailable
from colibri.supply import bundle, chain, docs, keys
from colibri.supply import manifest as mf
from colibri.supply.metadata import (
    FIRST_PARTY,
    MAX_INDEX,
    MAX_ROOT,
    Delegated,
    Entry,
    Root,
    envelope,
    index_document,
    parse_index,
    parse_root,
    root_document,
)


@dataclass(frozen=True)
class Published:
    name: str
    version: str
    digest: str
    index_version: int
    added: bool  # False: the same bundle again (its signature refreshed)


def new_key() -> tuple[bytes, str, str]:
    """(private PEM, public line, key id) of a fresh Ed25519 key."""
    key = Ed25519PrivateKey.generate()
    raw = keys.raw_public(key)
    return keys.private_pem(key), keys.public_line(raw), keys.key_id(raw)


def build(directory: Path, name: str, version: str, capabilities: tuple[str, ...]) -> tuple[bytes, mf.Manifest]:
    if not directory.is_dir():
        raise SupplyError(f"{directory} is not a skill directory")
    return bundle.build(directory, name, version, capabilities)


def sign(data: bytes, key: Ed25519PrivateKey) -> tuple[bytes, mf.Manifest]:
    """The detached signature (``BUNDLE.sig``) of a bundle, checked in full before it is signed."""
    unpacked = bundle.unpack(data, bundle.name_of(data))
    return chain.signature_document(key, unpacked.manifest_bytes), unpacked.manifest


def root_of(repo: DirectoryRepository, root_key: Ed25519PrivateKey) -> tuple[int, list[Delegated], list[str]]:
    """The repository's current root (version, delegated keys, revoked ids); (0, [], []) if none."""
    if not repo.exists("root.json"):
        return 0, [], []
    root = parse_root(repo.fetch("root.json", MAX_ROOT), keys.raw_public(root_key))
    return root.version, list(root.keys.values()), sorted(root.revoked)


def write_root(
    repo: DirectoryRepository, root_key: Ed25519PrivateKey, delegated: list[Delegated], revoked: list[str]
) -> int:
    version, _, _ = root_of(repo, root_key)
    signed = root_document(version + 1, delegated, revoked)
    repo.write("root.json", envelope(signed, [keys.sign(root_key, "root", docs.dump(signed))]))
    return version + 1


def delegate(
    repo: DirectoryRepository, root_key: Ed25519PrivateKey, public: bytes, expires: datetime
) -> tuple[str, int]:
    _, delegated, revoked = root_of(repo, root_key)
    key_id = keys.key_id(public)
    if key_id in revoked:
        raise Conflict(f"key {key_id} is revoked: delegate a new key instead")
    kept = [d for d in delegated if d.key_id != key_id]
    return key_id, write_root(repo, root_key, [*kept, Delegated(key_id, public, expires)], revoked)


def revoke(repo: DirectoryRepository, root_key: Ed25519PrivateKey, key_id: str) -> int:
    version, delegated, revoked = root_of(repo, root_key)
    if version == 0:
        raise SupplyError(f"{repo.location} has no root.json yet")
    if key_id not in {d.key_id for d in delegated} and key_id not in revoked:
        raise SupplyError(f"the root delegates no key {mf.shown(key_id)}")
    return write_root(repo, root_key, [d for d in delegated if d.key_id != key_id], [*revoked, key_id])


def publish(
    repo: DirectoryRepository,
    bundles: list[tuple[bytes, bytes]],
    key: Ed25519PrivateKey,
    now: datetime,
    expires: datetime,
) -> tuple[list[Published], int]:
    """Add signed bundles (each with its signature) to the index, bump the index's version once and
    re-sign it with ``key`` (none: only re-sign, with a new expiry); (what was added, the version)."""
    if not repo.exists("root.json"):
        raise SupplyUnavailable(f"{repo.location} has no root.json: delegate a signing key with the root key first")
    root = parse_root(repo.fetch("root.json", MAX_ROOT), None)
    root.usable(keys.key_id(keys.raw_public(key)), now, "the signing key")
    if expires <= now:
        raise SupplyError("the index's expiry must be in the future")
    entries: list[Entry] = []
    old_version = 0
    if repo.exists("index.json"):
        index = parse_index(repo.fetch("index.json", MAX_INDEX), None, now)
        old_version = index.version
        entries = [e for versions in index.skills.values() for e in versions.values()]
    done: list[Published] = []
    staged: list[tuple[str, bytes]] = []
    for data, sig in bundles:
        entry, added = _add(entries, data, sig, root, now)
        entries = [e for e in entries if (e.name, e.version) != (entry.name, entry.version)] + [entry]
        path = entry.bundle_path
        staged += [(path, data), (path + ".sig", sig)]
        done.append(Published(entry.name, entry.version, entry.digest, old_version + 1, added))
    for path, body in staged:  # every bundle checked before any is written
        repo.write(path, body)
    return done, reindex(repo, key, entries, old_version + 1, expires)


def _add(entries: list[Entry], data: bytes, sig: bytes, root: Root, now: datetime) -> tuple[Entry, bool]:
    unpacked = bundle.unpack(data, bundle.name_of(data))
    m = unpacked.manifest
    manifest_digest = "sha256:" + hashlib.sha256(unpacked.manifest_bytes).hexdigest()
    chain.check_signature(sig, manifest_digest, root, now, f"skill {m.name}@{m.version}")
    digest = bundle.digest(data)
    added = True
    for entry in entries:
        if entry.name == m.name and entry.version == m.version:
            if entry.digest != digest:
                raise Conflict(
                    f"skill {m.name}@{m.version} is already published with another bundle ({entry.digest[:19]}...)"
                )
            added = False
    return Entry(m.name, m.version, digest, len(data), manifest_digest, FIRST_PARTY, m.capabilities), added


def reindex(
    repo: DirectoryRepository, key: Ed25519PrivateKey, entries: list[Entry], version: int, expires: datetime
) -> int:
    signed = index_document(version, expires, sorted(entries, key=lambda e: (e.name, mf.version_key(e.version))))
    repo.write("index.json", envelope(signed, [keys.sign(key, "index", docs.dump(signed))]))
    return version
