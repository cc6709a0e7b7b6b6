"""The verification order (issue 13), pure: what a host accepts given what it has seen.

root.json by the pinned root (its version never goes back; the same version must be the same
bytes) → its delegated keys → index.json's signature by one of them, unrevoked and unexpired →
the index's version never goes back (the same version, the same bytes) → not expired (judged by
the caller: an expired index is shown, never installed from) → a bundle's size and digest are
the index's → its detached signature (``BUNDLE.sig``: the manifest's digest signed by a delegated,
unrevoked key) → its manifest is the one the index and the signature name → every file as the
manifest says (bundle.unpack).
"""

import hashlib
from dataclasses import dataclass
from datetime import datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from colibri.errors import BundleRefused, RollbackRefused, SignatureRefused, SupplyError
from colibri.supply import bundle, docs, keys
from colibri.supply import manifest as mf
from colibri.supply.metadata import Entry, Index, Root

MAX_SIG = 4096


@dataclass(frozen=True)
class Seen:
    """What this host has accepted before: the highest versions and their documents' digests."""

    root_version: int = 0
    root_digest: str = ""
    index_version: int = 0
    index_digest: str = ""


def check_root(seen: Seen, root: Root) -> None:
    if root.version < seen.root_version:
        raise RollbackRefused(
            f"root.json version {root.version} is older than version {seen.root_version} seen: rollback refused"
        )
    if root.version == seen.root_version and bundle.digest(root.raw) != seen.root_digest:
        raise RollbackRefused(f"root.json version {root.version} differs from the one seen under that version")


def check_index(seen: Seen, index: Index) -> None:
    if index.version < seen.index_version:
        raise RollbackRefused(
            f"index.json version {index.version} is older than version {seen.index_version} seen: rollback refused"
        )
    if index.version == seen.index_version and bundle.digest(index.raw) != seen.index_digest:
        raise RollbackRefused(f"index.json version {index.version} differs from the one seen under that version")


def expired(index: Index, now: datetime) -> bool:
    return index.expires <= now


def seen_after(root: Root, index: Index) -> Seen:
    return Seen(root.version, bundle.digest(root.raw), index.version, bundle.digest(index.raw))


def signature_document(key: Ed25519PrivateKey, manifest_bytes: bytes) -> bytes:
    manifest_digest = "sha256:" + hashlib.sha256(manifest_bytes).hexdigest()
    signed = keys.sign(key, "manifest", manifest_digest.encode())
    return docs.dump({"manifest": manifest_digest, **signed})


def check_signature(sig: bytes, manifest_digest: str, root: Root, now: datetime, what: str) -> str:
    """The key id of a valid detached signature of ``manifest_digest`` (SignatureRefused)."""
    try:
        doc = docs.load(sig, MAX_SIG, f"{what}: its .sig")
    except SupplyError as exc:
        raise SignatureRefused(exc.message) from None
    if doc.get("manifest") != manifest_digest:
        raise SignatureRefused(f"{what}: the signature is of another manifest")
    key = root.usable(str(doc.get("keyid"))[:80], now, what)
    keys.verify(key.public, "manifest", manifest_digest.encode(), doc.get("sig"), what)
    return key.key_id


def verify_bundle(entry: Entry, data: bytes, sig: bytes, root: Root, now: datetime) -> bundle.Unpacked:
    """The bundle of ``entry`` checked in full (BundleRefused, SignatureRefused)."""
    what = f"skill {entry.name}@{entry.version}"
    if len(data) != entry.size or bundle.digest(data) != entry.digest:
        raise BundleRefused(f"{what}: the bundle's size or digest is not the index's (a changed bundle)")
    unpacked = bundle.unpack(data, entry.name)
    manifest_digest = "sha256:" + hashlib.sha256(unpacked.manifest_bytes).hexdigest()
    if manifest_digest != entry.manifest:
        raise BundleRefused(f"{what}: its manifest is not the one the index names")
    check_signature(sig, manifest_digest, root, now, what)
    if unpacked.manifest.version != entry.version:
        raise BundleRefused(f"{what}: the manifest says version {mf.shown(unpacked.manifest.version)}")
    if unpacked.manifest.capabilities != entry.capabilities:
        raise BundleRefused(f"{what}: the manifest's capabilities are not the index's")
    return unpacked


def verify_pinned(name: str, pinned: str, data: bytes) -> bundle.Unpacked:
    """A community bundle the operator pinned by digest: the digest, then every file."""
    if bundle.digest(data) != pinned:
        raise BundleRefused(f"skill {name}: the bundle's digest is not the one the operator allowed ({pinned[:19]}...)")
    return bundle.unpack(data, name)
