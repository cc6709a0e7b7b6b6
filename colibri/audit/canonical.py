"""RFC 8785 (JSON Canonicalization Scheme) bytes: the exact bytes an audit entry is hashed as.

The ``rfc8785`` package implements the scheme (key order by UTF-16 code units, ECMAScript number
form, minimal escaping); audit bodies hold no floats (times are strings), so a verifier in any
language re-derives the same bytes from the same values.
"""

import json
from collections.abc import Mapping
from typing import Any

import rfc8785

_FAST = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True, allow_nan=False)


class NotCanonical(ValueError):
    """A value that has no place in an audit entry (a float, a non-string key, a foreign type)."""


def _check(value: Any, depth: int = 0) -> bool:
    """Raise NotCanonical for what no entry holds; whether every key is in the BMP (then the
    stdlib's sorted, compact, non-ASCII-escaping JSON is byte for byte RFC 8785: for strings,
    integers, booleans and null both escape only the same characters the same way, and code point
    order is UTF-16 order)."""
    if depth > 8:
        raise NotCanonical("nested too deeply")
    if value is None or isinstance(value, (bool, str)):
        return True
    if isinstance(value, int):
        if abs(value) > 2**53 - 1:  # beyond what every JSON reader holds exactly
            raise NotCanonical(f"integer out of range: {value}")
        return True
    if isinstance(value, (list, tuple)):
        bmp = True
        for item in value:
            bmp = _check(item, depth + 1) and bmp
        return bmp
    if isinstance(value, Mapping):
        bmp = True
        for key, item in value.items():
            if not isinstance(key, str):
                raise NotCanonical(f"non-string key: {key!r}")
            bmp = _check(item, depth + 1) and bmp and (key.isascii() or max(key) <= "\uffff")
        return bmp
    raise NotCanonical(f"{type(value).__name__} is not an audit value")


def canonical(value: Mapping[str, Any]) -> bytes:
    """``value`` as RFC 8785 bytes.  Raises NotCanonical for floats and foreign types."""
    if _check(value):
        try:
            return _FAST.encode(value).encode()
        except UnicodeEncodeError:  # a lone surrogate: rfc8785 refuses it as it should
            pass
    return rfc8785.dumps(value)
