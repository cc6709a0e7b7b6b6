"""The supply chain's JSON documents as bytes: canonical when written, strict and bounded when read.

Every document colibri signs is canonical JSON (RFC 8785, audit/canonical.py) so a signature is
over exactly one byte string; every document read is strict JSON (strictjson.py), refused above
its size limit or when it is not an object.
"""

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from colibri import strictjson
from colibri.audit.canonical import NotCanonical, canonical
from colibri.errors import SupplyError


def dump(value: Mapping[str, Any]) -> bytes:
    try:
        return canonical(value)
    except NotCanonical as exc:
        raise SupplyError(f"cannot write the document: {exc}") from None


def load(data: bytes, limit: int, what: str) -> dict[str, Any]:
    if len(data) > limit:
        raise SupplyError(f"{what} is larger than {limit} bytes: refused")
    try:
        found = strictjson.loads(data, max_depth=8)
    except (ValueError, UnicodeDecodeError) as exc:
        raise SupplyError(f"{what} is not JSON: {str(exc)[:120]}") from None
    if not isinstance(found, dict):
        raise SupplyError(f"{what} is not a JSON object")
    return found


def field(doc: Mapping[str, Any], name: str, kind: type, what: str) -> Any:
    value = doc.get(name)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise SupplyError(f"{what}: {name!r} is missing or not a {kind.__name__}")
    return value


def stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: object, what: str) -> datetime:
    if not isinstance(value, str) or len(value) != 20 or not value.endswith("Z"):
        raise SupplyError(f"{what}: not a UTC time (YYYY-MM-DDTHH:MM:SSZ)")
    try:
        return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        raise SupplyError(f"{what}: not a UTC time (YYYY-MM-DDTHH:MM:SSZ)") from None
