"""RFC 8785 (JSON Canonicalization Scheme) bytes: the exact bytes an audit entry is hashed as.

The ``rfc8785`` package implements the scheme (key order by UTF-16 code units, ECMAScript number
form, minimal escaping); audit bodies hold no floats (times are strings), so a verifier in any
language re-derives the same bytes from the same values.
"""

import json
from collections.abc import Mapping
from typing import Any

import rfc8785


class NotCanonical(ValueError):
    """A value that has no place in an audit entry (a float, a non-string key, a foreign type)."""


def _check(value: Any, depth: int = 0) -> bool:
    """Raise NotCanonical for what has no place in an entry; True when every key is ASCII."""
    if depth > 8:
        raise NotCanonical("nested too deeply")
    if value is None or isinstance(value, (bool, str)):
        return True
    if isinstance(value, int):
        if abs(value) > 2**53 - 1:  # beyond what every JSON reader holds exactly
            raise NotCanonical(f"integer out of range: {value}")
        return True
    if isinstance(value, (list, tuple)):
        plain = True
        for item in value:
            plain = _check(item, depth + 1) and plain
        return plain
    if isinstance(value, Mapping):
        plain = True
        for key, item in value.items():
            if not isinstance(key, str):
                raise NotCanonical(f"non-string key: {key!r}")
            plain = _check(item, depth + 1) and key.isascii() and plain
        return plain
    raise NotCanonical(f"{type(value).__name__} is not an audit value")


def canonical(value: Mapping[str, Any]) -> bytes:
    """``value`` as RFC 8785 bytes.  Raises NotCanonical for floats and foreign types.

    Fast path: for what an entry holds (no floats, integers within 2**53, keys in ASCII) the
    standard library's ``json.dumps`` with sorted keys, no spaces and no ASCII escaping writes
    the same bytes as RFC 8785 (the same string escapes: the two-character ones and a backslash-u00xx
    for the other control characters, nothing else; keys in ASCII sort alike by code point and by
    UTF-16 unit).  A lone surrogate has no UTF-8, so that text goes to ``rfc8785`` (which refuses
    it).  tests/unit/audit/test_canonical_hooks.py checks the two agree."""
    if not _check(value):
        return rfc8785.dumps(value)
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return rfc8785.dumps(value)
