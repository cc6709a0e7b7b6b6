"""Ed25519 keys and signatures of the skills supply chain (issue 13): pure, no I/O.

A private key is PKCS#8 PEM, as the audit signing key (adapters/audit_keys.py); a public key file is
one line ``colibri-skills-ed25519 <base64 raw key>`` (minisign's idea: one short line an operator
can paste and compare).  A key id is ``ed25519:`` + the first 16 hex digits of the raw public
key's SHA-256.  Every signature is over a domain-separated message (``colibri-<what>-v1\\n`` +
the signed bytes), so a manifest signature can never pass as an index's or a root's.
"""

import base64
import binascii
import hashlib

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from colibri.errors import SignatureRefused, SupplyError

PUBLIC_PREFIX = "colibri-skills-ed25519"
MAX_KEY_FILE = 4096
DOMAINS = ("root", "index", "manifest")


def key_id(public: bytes) -> str:
    return "ed25519:" + hashlib.sha256(public).hexdigest()[:16]


def raw_public(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def private_pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def load_private(data: bytes, what: str) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(data[:MAX_KEY_FILE], password=None)
    except (ValueError, TypeError):
        raise SupplyError(f"{what} is not an Ed25519 private key (PKCS#8 PEM)") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SupplyError(f"{what} is not an Ed25519 private key (PKCS#8 PEM)")
    return key


def public_line(public: bytes) -> str:
    return f"{PUBLIC_PREFIX} {base64.b64encode(public).decode()}\n"


def parse_public_line(text: bytes, what: str) -> bytes:
    """The raw 32-byte key of a public key file's line."""
    parts = text[:MAX_KEY_FILE].decode("ascii", "replace").split()
    if len(parts) != 2 or parts[0] != PUBLIC_PREFIX:
        raise SupplyError(f"{what} is not a colibri skills public key ({PUBLIC_PREFIX} <base64>)")
    return decode_public(parts[1], what)


def decode_public(text: object, what: str) -> bytes:
    if not isinstance(text, str) or len(text) > 64:
        raise SupplyError(f"{what}: not a base64 Ed25519 public key")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise SupplyError(f"{what}: not a base64 Ed25519 public key") from None
    if len(raw) != 32:
        raise SupplyError(f"{what}: not a 32-byte Ed25519 public key")
    return raw


def _message(domain: str, data: bytes) -> bytes:
    assert domain in DOMAINS
    return f"colibri-{domain}-v1\n".encode() + data


def sign(key: Ed25519PrivateKey, domain: str, data: bytes) -> dict[str, str]:
    """``{"keyid", "sig"}`` over ``data`` in ``domain``."""
    return {"keyid": key_id(raw_public(key)), "sig": base64.b64encode(key.sign(_message(domain, data))).decode()}


def verify(public: bytes, domain: str, data: bytes, signature: object, what: str) -> None:
    """Raise SignatureRefused unless ``signature`` (base64) is ``public``'s over ``data`` in ``domain``."""
    if not isinstance(signature, str) or len(signature) > 128:
        raise SignatureRefused(f"{what}: the signature is not base64 Ed25519")
    try:
        raw = base64.b64decode(signature, validate=True)
        Ed25519PublicKey.from_public_bytes(public).verify(raw, _message(domain, data))
    except (binascii.Error, ValueError, InvalidSignature):
        raise SignatureRefused(f"{what}: the signature does not verify") from None
