"""Bitwarden client-side crypto, done server-side so the test server can seed a real vault.

A real Vaultwarden never sees these keys: the clients derive and wrap them. The test server
plays the client's part at seeding time so that the real ``bw`` CLI can decrypt what it syncs.

Formats (all accepted by bw 2026.9.0, see shared/reference/bw.md):

- master key: PBKDF2-SHA256(password, lower(email), iterations, 32)
- auth hash (sent as ``password`` in the password grant): PBKDF2-SHA256(master key, password, 1, 32)
- stretched master key: HKDF-Expand(master key, "enc", 32) || HKDF-Expand(master key, "mac", 32)
- type-2 EncString: ``2.b64(iv)|b64(ct)|b64(mac)``, AES-256-CBC/PKCS7, HMAC-SHA256 over iv||ct
- type-4 EncString: ``4.b64(RSA-OAEP-SHA1(public key, plaintext))``
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.padding import MGF1, OAEP
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

# bw refuses fewer PBKDF2 iterations ("possible pre-login downgrade attack").
MIN_PBKDF2_ITERATIONS = 5000
KDF_TYPE_PBKDF2 = 0


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@dataclass(frozen=True)
class SymmetricKey:
    """A 64-byte Bitwarden symmetric key: 32 bytes AES key, 32 bytes HMAC key."""

    enc: bytes
    mac: bytes

    @classmethod
    def generate(cls) -> SymmetricKey:
        return cls.from_bytes(os.urandom(64))

    @classmethod
    def from_bytes(cls, raw: bytes) -> SymmetricKey:
        if len(raw) != 64:
            raise ValueError(f"a symmetric key is 64 bytes, got {len(raw)}")
        return cls(enc=raw[:32], mac=raw[32:])

    @property
    def raw(self) -> bytes:
        return self.enc + self.mac


def master_key(password: str, email: str, iterations: int) -> bytes:
    if iterations < MIN_PBKDF2_ITERATIONS:
        raise ValueError(f"bw rejects PBKDF2 below {MIN_PBKDF2_ITERATIONS} iterations, got {iterations}")
    salt = email.strip().lower().encode()
    return hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations, 32)


def master_password_hash(master: bytes, password: str) -> str:
    """The value the client sends as ``password`` in the password grant."""
    return b64(hashlib.pbkdf2_hmac("sha256", master, password.encode(), 1, 32))


def stretch(master: bytes) -> SymmetricKey:
    def expand(info: bytes) -> bytes:
        return HKDFExpand(algorithm=hashes.SHA256(), length=32, info=info).derive(master)

    return SymmetricKey(enc=expand(b"enc"), mac=expand(b"mac"))


def encrypt(plaintext: bytes, key: SymmetricKey) -> str:
    """Type-2 EncString (AesCbc256_HmacSha256_B64)."""
    iv = os.urandom(16)
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plaintext) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key.enc), modes.CBC(iv)).encryptor()
    ct = encryptor.update(padded) + encryptor.finalize()
    mac = hmac.new(key.mac, iv + ct, hashlib.sha256).digest()
    return f"2.{b64(iv)}|{b64(ct)}|{b64(mac)}"


def encrypt_str(text: str, key: SymmetricKey) -> str:
    return encrypt(text.encode("utf-8"), key)


def decrypt(enc_string: str, key: SymmetricKey) -> bytes:
    """Inverse of :func:`encrypt`; used by the server's own tests, never by the server."""
    kind, _, body = enc_string.partition(".")
    if kind != "2":
        raise ValueError(f"only type-2 EncStrings are supported here, got type {kind!r}")
    iv, ct, mac = (base64.b64decode(part) for part in body.split("|"))
    expected = hmac.new(key.mac, iv + ct, hashlib.sha256).digest()
    if not hmac.compare_digest(mac, expected):
        raise ValueError("EncString MAC mismatch: wrong key")
    decryptor = Cipher(algorithms.AES(key.enc), modes.CBC(iv)).decryptor()
    padded = decryptor.update(ct) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    return unpadder.update(padded) + unpadder.finalize()


def decrypt_str(enc_string: str, key: SymmetricKey) -> str:
    return decrypt(enc_string, key).decode("utf-8")


_OAEP_SHA1 = OAEP(mgf=MGF1(algorithm=hashes.SHA1()), algorithm=hashes.SHA1(), label=None)


def rsa_wrap(plaintext: bytes, public_key: rsa.RSAPublicKey) -> str:
    """Type-4 EncString (Rsa2048_OaepSha1_B64): how Bitwarden shares an org key with a member."""
    return f"4.{b64(public_key.encrypt(plaintext, _OAEP_SHA1))}"


def rsa_unwrap(enc_string: str, private_key: rsa.RSAPrivateKey) -> bytes:
    kind, _, body = enc_string.partition(".")
    if kind != "4":
        raise ValueError(f"expected a type-4 EncString, got type {kind!r}")
    return private_key.decrypt(base64.b64decode(body), _OAEP_SHA1)


@dataclass(frozen=True)
class AccountKeys:
    """Everything the server stores for one user's vault, as a real client would have uploaded it."""

    user_key: SymmetricKey
    private_key: rsa.RSAPrivateKey
    auth_hash: str  # master password hash the client will send
    wrapped_user_key: str  # user key under the stretched master key ("Key"/"akey")
    wrapped_private_key: str  # PKCS8 DER under the user key
    public_key_b64: str  # SPKI DER

    @property
    def public_key(self) -> rsa.RSAPublicKey:
        return self.private_key.public_key()


def make_account_keys(email: str, password: str, iterations: int) -> AccountKeys:
    master = master_key(password, email, iterations)
    user_key = SymmetricKey.generate()
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pkcs8 = private_key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    spki = private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return AccountKeys(
        user_key=user_key,
        private_key=private_key,
        auth_hash=master_password_hash(master, password),
        wrapped_user_key=encrypt(user_key.raw, stretch(master)),
        wrapped_private_key=encrypt(pkcs8, user_key),
        public_key_b64=b64(spki),
    )
