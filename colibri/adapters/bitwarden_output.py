"""What ``bw`` answers, as colibri reads it: the vault's values (its collections and items, one
session's snapshot, bw's status) and the pure parsers of bw's stdout and of its failures.

Only stdout is parsed.  stderr is looked at for a few known markers to choose colibri's own
message (``message``); it is never shown, logged or put in an exception (it may hold secrets).
Running bw (its data directory, the lock, the session) is colibri/adapters/bitwarden.py.
"""

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from colibri.adapters.runner import CommandResult
from colibri.errors import SecretsError

# (marker in bw's stderr, colibri's message).  First match wins.
_MARKERS: tuple[tuple[str, str], ...] = (
    ("Insecure URL", "the vault URL must use https"),
    ("certificate", "the vault server's TLS certificate is not trusted (set vault_ca_file)"),
    ("ECONNREFUSED", "cannot reach the vault server (connection refused)"),
    ("ENOTFOUND", "cannot reach the vault server (unknown host)"),
    ("ETIMEDOUT", "cannot reach the vault server (timed out)"),
    ("client_id or client_secret is incorrect", "the vault refused the API key: wrong client id or secret"),
    ("decryption operation failed", "wrong master password: bw could not decrypt the vault key"),
    ("Invalid master password", "wrong master password"),
    ("Vault is locked", "the vault is locked: bw refused the session key"),
    ("JSON", "the vault server answered something that is not valid JSON"),
    ("FetchError", "cannot reach the vault server"),
)


@dataclass(frozen=True)
class BwStatus:
    server_url: str | None
    status: str  # unauthenticated | locked | unlocked
    user_email: str | None = None


@dataclass(frozen=True)
class VaultCollection:
    id: str
    name: str


@dataclass(frozen=True)
class VaultItem:
    id: str
    name: str
    collection_ids: tuple[str, ...]
    notes: str | None
    fields: tuple[tuple[str, str], ...]  # (name, value) in the item's order


@dataclass(frozen=True)
class VaultSnapshot:
    """What one unlocked session read: the organization's collections and items."""

    collections: tuple[VaultCollection, ...]
    items: tuple[VaultItem, ...]
    bw_calls: int = 0


Selector = Callable[[tuple[VaultCollection, ...]], Iterable[str]]
"""Given the organization's collections, the ids of those whose items are wanted."""


def message(result: CommandResult, what: str) -> str:
    err = result.err
    for marker, text in _MARKERS:
        if marker in err:
            return f"bw {what} failed: {text}"
    return f"bw {what} failed with exit status {result.exit_code}"


def json_complete(data: bytearray) -> bool:
    """Whether ``data`` is one whole JSON object or array: what bw prints, in one write and with
    no newline to a pipe, once a read-only command has succeeded (failures go to stderr).  A
    proper prefix of an object or array never parses, so a parse means the answer is whole."""
    if not data[-16:].rstrip().endswith((b"]", b"}")):
        return False  # cheap: called after every read of stdout
    try:
        json.loads(data)
    except ValueError:
        return False
    return True


def parse_json(result: CommandResult, what: str) -> Any:
    try:
        return json.loads(result.out)
    except ValueError:
        raise SecretsError(f"bw {what} printed something that is not JSON") from None


def parse_status(data: Any) -> BwStatus:
    if not isinstance(data, dict) or not isinstance(data.get("status"), str):
        raise SecretsError("bw status printed an unexpected document")
    url = data.get("serverUrl")
    email = data.get("userEmail")
    return BwStatus(url if isinstance(url, str) else None, data["status"], email if isinstance(email, str) else None)


def parse_collections(data: Any) -> tuple[VaultCollection, ...]:
    if not isinstance(data, list):
        raise SecretsError("bw list collections printed an unexpected document")
    return tuple(VaultCollection(str(c["id"]), str(c.get("name") or "")) for c in data if isinstance(c, dict))


def _field_value(item: dict[str, Any], raw: dict[str, Any]) -> str:
    """A custom field's value; a linked field (type 3) takes the login's username or password."""
    if raw.get("type") == 3:
        login = item.get("login") or {}
        linked = {100: "username", 101: "password"}.get(raw.get("linkedId") or 0)
        value = login.get(linked) if linked else None
        return "" if value is None else str(value)
    value = raw.get("value")
    return "" if value is None else str(value)


def parse_items(data: Any) -> tuple[VaultItem, ...]:
    if not isinstance(data, list):
        raise SecretsError("bw list items printed an unexpected document")
    items = []
    for raw in data:
        if not isinstance(raw, dict) or not raw.get("id"):
            raise SecretsError("bw list items printed an item without an id")
        fields = tuple(
            (str(f.get("name") or ""), _field_value(raw, f)) for f in raw.get("fields") or () if isinstance(f, dict)
        )
        notes = raw.get("notes")
        items.append(
            VaultItem(
                id=str(raw["id"]),
                name=str(raw.get("name") or ""),
                collection_ids=tuple(str(c) for c in raw.get("collectionIds") or ()),
                notes=notes if isinstance(notes, str) else None,
                fields=fields,
            )
        )
    return tuple(items)
