"""RFC 8785 (JSON Canonicalization Scheme) bytes: the exact bytes an audit entry is hashed as.

The ``rfc8785`` package implements the scheme (key order by UTF-16 code units, ECMAScript number
form, minimal escaping); audit bodies hold no floats (times are strings), so a verifier in any
language re-derives the same bytes from the same values.
"""

from collections.abc import Mapping
from typing import Any

import rfc8785


class NotCanonical(ValueError):
    """A value that has no place in an audit entry (a float, a non-string key, a foreign type)."""


def _check(value: Any, depth: int = 0) -> None:
    if depth > 8:
        raise NotCanonical("nested too deeply")
    if value is None or isinstance(value, (bool, str)):
        return
    if isinstance(value, int):
        if abs(value) > 2**53 - 1:  # beyond what every JSON reader holds exactly
            raise NotCanonical(f"integer out of range: {value}")
        return
    if isinstance(value, (list, tuple)):
        for item in value:
            _check(item, depth + 1)
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise NotCanonical(f"non-string key: {key!r}")
            _check(item, depth + 1)
        return
    raise NotCanonical(f"{type(value).__name__} is not an audit value")


def canonical(value: Mapping[str, Any]) -> bytes:
    """``value`` as RFC 8785 bytes.  Raises NotCanonical for floats and foreign types."""
    _check(value)
    return rfc8785.dumps(value)
