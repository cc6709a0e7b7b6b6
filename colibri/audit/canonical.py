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


def _refuse(value: Any) -> Any:
    raise TypeError(f"{type(value).__name__} is not an audit value")


_C_ENCODER = getattr(json.encoder, "c_make_encoder", None)
_MADE = (
    # the same encoder as _FAST, made once (JSONEncoder.encode builds a new C encoder per call,
    # which cost more than encoding an entry); no circular-reference markers (None): _check
    # refuses any value nested past 8 levels before it is encoded
    _C_ENCODER(None, _refuse, json.encoder.encode_basestring, None, ":", ",", True, False, False)
    if _C_ENCODER is not None
    else None
)


def _encode(value: Mapping[str, Any]) -> str:
    return "".join(_MADE(value, 0)) if _MADE is not None else _FAST.encode(value)


class NotCanonical(ValueError):
    """A value that has no place in an audit entry (a float, a non-string key, a foreign type)."""


def _check(value: Any, depth: int = 0) -> bool:
    """Raise NotCanonical for what no entry holds; whether every key is in the BMP (then the
    stdlib's sorted, compact, non-ASCII-escaping JSON is byte for byte RFC 8785: for strings,
    integers, booleans and null both escape only the same characters the same way, and code point
    order is UTF-16 order).  Scalars inside a list or a mapping are checked in its loop (an
    entry's detail is mostly flat: a call per value cost more than the encoding)."""
    if depth > 8:
        raise NotCanonical("nested too deeply")
    if value is None or isinstance(value, (bool, str)):
        return True
    if isinstance(value, int):
        if abs(value) > MAX_INT:  # beyond what every JSON reader holds exactly
            raise NotCanonical(f"integer out of range: {value}")
        return True
    shallow = depth < 8  # a scalar one level down is still within the depth
    if isinstance(value, (list, tuple)):
        bmp = True
        for item in value:
            kind = type(item)
            if shallow and (
                kind is str or item is None or kind is bool or (kind is int and -MAX_INT <= item <= MAX_INT)
            ):
                continue
            bmp = _check(item, depth + 1) and bmp
        return bmp
    if isinstance(value, Mapping):
        bmp = True
        for key, item in value.items():
            if not isinstance(key, str):
                raise NotCanonical(f"non-string key: {key!r}")
            if not (key.isascii() or max(key) <= "\uffff"):
                bmp = False
            kind = type(item)
            if shallow and (
                kind is str or item is None or kind is bool or (kind is int and -MAX_INT <= item <= MAX_INT)
            ):
                continue
            bmp = _check(item, depth + 1) and bmp
        return bmp
    raise NotCanonical(f"{type(value).__name__} is not an audit value")


MAX_INT = 2**53 - 1
"""The largest integer an entry holds (beyond it not every JSON reader holds it exactly)."""


def stdlib_text(value: Mapping[str, Any], depth: int = 0) -> str | None:
    """``value`` as RFC 8785 text where the stdlib's encoding of it is that (every key in the
    BMP), else None (only rfc8785 orders such keys).  Raises NotCanonical as ``canonical`` does.
    The text is RFC 8785 once it encodes to UTF-8 (a lone surrogate does not)."""
    return _encode(value) if _check(value, depth) else None


quote = json.encoder.encode_basestring
"""A string as JSON text with only what RFC 8785 escapes escaped (the stdlib's C encoder)."""


def canonical(value: Mapping[str, Any], depth: int = 0) -> bytes:
    """``value`` as RFC 8785 bytes.  Raises NotCanonical for floats and foreign types (and for
    nesting deeper than 8, counting from ``depth``: a part of an entry counts from its place)."""
    if _check(value, depth):
        try:
            return _encode(value).encode()
        except UnicodeEncodeError:  # a lone surrogate: rfc8785 refuses it as it should
            pass
    return rfc8785.dumps(value)
