"""The host-local key the audit's content digests are keyed with (issue 12).

An audit entry of a provisioning names the ``.env``'s keys and a digest of its content, so an
operator can tell whether two hosts got the same text, or whether it changed, without the entry
holding a value.  A plain SHA-256 would not do: the audit bundle is handed to third parties
(customers, auditors), and a secret of low entropy (a PIN, a short password, a value from a known
list) is found from its plain hash by trying the candidates.  HMAC-SHA256 under a random key that
never leaves this host (root-only, 0600, in the state directory, never in a bundle) gives those
readers nothing to try against; this host can still recompute a digest to compare.
"""

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from colibri.errors import StoreError

KEY_BYTES = 32


def load_key(path: Path) -> bytes:
    """The digest key at ``path``, made (32 random bytes, 0600, exclusively) on first use."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "wb") as handle:
                handle.write(secrets.token_bytes(KEY_BYTES))
                handle.flush()
                os.fsync(handle.fileno())
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as handle:
            info = os.fstat(handle.fileno())
            key = handle.read(KEY_BYTES + 1)
    except OSError as exc:
        raise StoreError(f"cannot read the audit digest key {path}: {exc.strerror}") from None
    if info.st_mode & 0o077 or info.st_uid != os.geteuid():
        raise StoreError(f"the audit digest key {path} is readable by others or not ours: chmod 600 it")
    if len(key) != KEY_BYTES:
        raise StoreError(f"the audit digest key {path} is not {KEY_BYTES} bytes: remove it to make a new one")
    return key


class Digester:
    """``digest(content)``: ``hmac-sha256:<hex>`` of ``content`` under the host's key (read once)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._key: bytes | None = None

    def __call__(self, content: bytes) -> str:
        if self._key is None:
            self._key = load_key(self._path)
        return "hmac-sha256:" + hmac.new(self._key, content, hashlib.sha256).hexdigest()
