"""OpenSSH public key lines and known_hosts files: parsed, normalised, fingerprinted (pure, stdlib:
``hosts add`` and ``hosts`` use it without loading paramiko; colibri.adapters.ssh_transport compares with it)."""

import base64
import binascii
import hashlib
import hmac

from colibri.errors import InvalidInput

KEY_TYPES = ("ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "ssh-rsa")
"""The host key types colibri pins (no DSA: OpenSSH dropped it)."""


def parse_key_line(line: str) -> tuple[str, bytes]:
    """``(type, blob)`` of an OpenSSH public key line ``TYPE BASE64 [comment]``; InvalidInput
    names what is wrong (never more than the type)."""
    parts = line.strip().split(None, 2)
    if len(parts) < 2:
        raise InvalidInput("a host key must be an OpenSSH public key line such as 'ssh-ed25519 AAAA...'")
    kind, text = parts[0], parts[1]
    if kind not in KEY_TYPES:
        shown = kind[:40].encode("ascii", "backslashreplace").decode()
        raise InvalidInput(f"host key type {shown!r} is not one of {', '.join(KEY_TYPES)}")
    try:
        blob = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(f"the {kind} host key is not valid base64") from None
    if _blob_type(blob) != kind:
        raise InvalidInput(f"the {kind} host key's data is not a {kind} key")
    return kind, blob


def _blob_type(blob: bytes) -> str | None:
    if len(blob) < 4:
        return None
    size = int.from_bytes(blob[:4], "big")
    if size > 64 or len(blob) < 4 + size:
        return None
    return blob[4 : 4 + size].decode("ascii", "replace")


def normal_key_line(line: str) -> str:
    """The pinned form of a key line: ``TYPE BASE64`` (a comment is dropped: it proves nothing)."""
    kind, blob = parse_key_line(line)
    return f"{kind} {base64.b64encode(blob).decode('ascii')}"


def fingerprint(line: str) -> str:
    """``SHA256:...`` as ``ssh-keygen -l`` shows it (to compare with the host's console)."""
    _, blob = parse_key_line(line)
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode("ascii").rstrip("=")


def keys_from_known_hosts(text: str, address: str, port: int) -> tuple[str, ...]:
    """The key lines of a known_hosts file (hashed or not) for ``address`` (``[address]:port`` off
    port 22); a file of bare public key lines (a host's ``ssh_host_*_key.pub``) gives them all.
    ``@revoked`` and ``@cert-authority`` lines are never pinned."""
    wanted = address if port == 22 else f"[{address}]:{port}"
    found: list[str] = []
    revoked: set[str] = set()
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("@revoked"):  # sshd(8) "SSH_KNOWN_HOSTS FILE FORMAT": a revoked key is never pinned
            parts = line.split()
            if (
                len(parts) >= 4
                and parts[2] in KEY_TYPES
                and any(pattern == "*" or _host_matches(pattern, wanted) for pattern in parts[1].split(","))
            ):
                revoked.add(normal_key_line(" ".join(parts[2:4])))
            continue
        if not line or line.startswith("#") or line.startswith("@"):
            continue
        parts = line.split()
        if parts[0] in KEY_TYPES:
            found.append(normal_key_line(line))
            continue
        if len(parts) < 3 or parts[1] not in KEY_TYPES:
            continue
        if any(_host_matches(pattern, wanted) for pattern in parts[0].split(",")):
            found.append(normal_key_line(" ".join(parts[1:3])))
    return tuple(key for key in dict.fromkeys(found) if key not in revoked)


def _host_matches(pattern: str, wanted: str) -> bool:
    if pattern.startswith("|1|"):
        try:
            salt_text, digest_text = pattern[3:].split("|", 1)
            salt, digest = base64.b64decode(salt_text), base64.b64decode(digest_text)
        except (ValueError, binascii.Error):
            return False
        return hmac.compare_digest(hmac.new(salt, wanted.encode(), hashlib.sha1).digest(), digest)
    return pattern == wanted
