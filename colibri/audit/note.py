"""Signed checkpoints: C2SP signed notes over (origin, tree size, root), and the hosts' keys.

A checkpoint (C2SP tlog-checkpoint) is the note body::

    colibri.audit/<host>
    <tree size>
    <base64 root>
    time <UTC time it was signed>

followed by a blank line and one signature line per signer, ``— <key name> <base64(key hash ||
Ed25519 signature)>`` (C2SP signed-note).  A host's key name is its origin, ``colibri.audit/<host>``;
the key hash is the first 4 bytes of SHA-256(name || 0x0A || 0x01 || public key), shown as 8 hex
digits: the key id.  A public key travels as a C2SP verifier key, ``<name>+<key id>+<base64(0x01 ||
public key)>``.  Pure code: signing is a callable handed in (the key file is an adapter).
"""

import base64
import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

PREFIX = "colibri.audit/"
# \Z, not $ (which also matches before a final newline), and ASCII digits only: a name or time from
# a bundle is shown to the operator and compared as text
HOST = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z\Z", re.ASCII)
SIZE = re.compile(r"^[0-9]{1,16}\Z")
DASH = "\u2014"
MAX_NOTE = 4096
COSIGN_HEADER = b"colibri.audit cosignature/v1\n"
ENDORSE_HEADER = b"colibri.audit endorsement/v1\n"
EXPORT_HEADER = b"colibri.audit export/v1\n"

Signer = Callable[[bytes], bytes]


class BadNote(ValueError):
    """A note, key or signature that does not parse or does not verify (the reason is the text)."""


def key_name(host: str) -> str:
    if not HOST.match(host):
        raise BadNote(f"bad host name {host[:64]!r}")
    return PREFIX + host


def _key_hash(name: str, raw: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n\x01" + raw).digest()[:4]


@dataclass(frozen=True)
class PublicKey:
    name: str
    raw: bytes

    @property
    def host(self) -> str:
        return self.name.removeprefix(PREFIX)

    @property
    def key_hash(self) -> bytes:
        return _key_hash(self.name, self.raw)

    @property
    def key_id(self) -> str:
        return self.key_hash.hex()

    @property
    def vkey(self) -> str:
        encoded = base64.b64encode(b"\x01" + self.raw).decode()
        return f"{self.name}+{self.key_id}+{encoded}"

    def verify(self, signature: bytes, message: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.raw).verify(signature, message)
        except (InvalidSignature, ValueError):
            return False
        return True


def parse_vkey(text: str) -> PublicKey:
    """A verifier key ``<name>+<key id>+<base64>``; raises BadNote."""
    parts = text.strip().split("+", 2)  # the base64 may hold "+" itself
    if len(parts) != 3 or len(text) > 256:
        raise BadNote("not a colibri audit key (<name>+<key id>+<base64 key>)")
    name, key_id, encoded = parts
    if not name.startswith(PREFIX):
        raise BadNote(f"key name {name[:80]!r} is not colibri.audit/<host>")
    key_name(name.removeprefix(PREFIX))
    try:
        raw = base64.b64decode(encoded, validate=True)
    except ValueError:  # binascii.Error, or a non-ASCII str
        raise BadNote("the key is not base64") from None
    if len(raw) != 33 or raw[0] != 1:
        raise BadNote("not an Ed25519 key")
    key = PublicKey(name, raw[1:])
    if key.key_id != key_id.lower():
        raise BadNote(f"key id {key_id[:16]!r} does not match the key (it is {key.key_id})")
    return key


@dataclass(frozen=True)
class Checkpoint:
    host: str
    size: int
    root: bytes
    time: str

    @property
    def origin(self) -> str:
        return key_name(self.host)

    def body(self) -> str:
        return f"{self.origin}\n{self.size}\n{base64.b64encode(self.root).decode()}\ntime {self.time}\n"


def sign(checkpoint: Checkpoint, key: PublicKey, signer: Signer) -> str:
    """The signed note of ``checkpoint`` under ``key`` (``signer`` holds its private half)."""
    body = checkpoint.body()
    signature = signer(body.encode())
    return f"{body}\n{DASH} {key.name} {base64.b64encode(key.key_hash + signature).decode()}\n"


def parse(note: str) -> tuple[Checkpoint, list[tuple[str, bytes, bytes]]]:
    """The checkpoint and its (key name, key hash, signature) lines, unverified; raises BadNote."""
    if len(note) > MAX_NOTE:
        raise BadNote("note too large")
    body, sep, sigs = note.partition("\n\n")
    if not sep or not sigs.endswith("\n"):
        raise BadNote("not a signed note")
    lines = body.split("\n")
    if len(lines) != 4 or not lines[0].startswith(PREFIX) or not lines[3].startswith("time "):
        raise BadNote("not a colibri checkpoint")
    host, size_text, root_text, time = lines[0].removeprefix(PREFIX), lines[1], lines[2], lines[3][5:]
    if not HOST.match(host) or not SIZE.match(size_text) or not TIME.match(time):
        raise BadNote("malformed checkpoint")
    try:
        root = base64.b64decode(root_text, validate=True)
    except ValueError:  # binascii.Error, or a non-ASCII str
        raise BadNote("root not base64") from None
    if len(root) != 32 or base64.b64encode(root).decode() != root_text:
        raise BadNote("root not a SHA-256 hash")
    checkpoint = Checkpoint(host, int(size_text), root, time)
    if checkpoint.body() != body + "\n":
        raise BadNote("checkpoint not in its canonical form")
    found = []
    for line in sigs[:-1].split("\n"):
        parts = line.split(" ")
        if len(parts) != 3 or parts[0] != DASH:
            raise BadNote("malformed signature line")
        try:
            blob = base64.b64decode(parts[2], validate=True)
        except ValueError:  # binascii.Error, or a non-ASCII str
            raise BadNote("signature not base64") from None
        if len(blob) != 68:
            raise BadNote("not an Ed25519 signature")
        found.append((parts[1], blob[:4], blob[4:]))
    return checkpoint, found


def open_note(note: str, keys: Iterable[PublicKey]) -> tuple[Checkpoint, PublicKey]:
    """The checkpoint and the key that signed it, among ``keys`` for its origin; raises BadNote."""
    checkpoint, sigs = parse(note)
    message = checkpoint.body().encode()
    candidates = [k for k in keys if k.name == checkpoint.origin]
    for name, key_hash, signature in sigs:
        for key in candidates:
            if key.name == name and key.key_hash == key_hash:
                if key.verify(signature, message):
                    return checkpoint, key
                raise BadNote(f"the signature of key {key.key_id} does not verify")
    named = ", ".join(f"{n}+{h.hex()}" for n, h, _ in sigs) or "none"
    raise BadNote(f"signed by an unknown key ({named})")


def cosign_message(checkpoint: Checkpoint, time: str) -> bytes:
    """What a witness signs: the tree (origin, size, root; not the host's own time) and its own time."""
    tree = f"{checkpoint.origin}\n{checkpoint.size}\n{base64.b64encode(checkpoint.root).decode()}\n"
    return COSIGN_HEADER + f"time {time}\n{tree}".encode()


def endorse_message(new: PublicKey, time: str) -> bytes:
    return ENDORSE_HEADER + f"{new.vkey}\ntime {time}\n".encode()


def export_message(host: str, time: str, heads: dict[str, tuple[int, str]]) -> bytes:
    lines = "".join(f"{h} {size} {root}\n" for h, (size, root) in sorted(heads.items()))
    return EXPORT_HEADER + f"{key_name(host)}\ntime {time}\n{lines}".encode()
