"""Strict JSON, the one parser for documents a tenant or an operator hands colibri (an API body, a
``--payload``): what the stdlib accepts beyond RFC 8259 is refused, and so is what the store could
not hold or a recursive walk could not survive.

Refused: NaN, Infinity and numbers that overflow a double (``1e400``); integers beyond 64 bits (the
store's columns); nesting deeper than ``max_depth``; invalid UTF-8 and lone surrogates, raw or
escaped (``"\\ud800"``: no UTF-8 encoder could write it back).  Each refusal is NotStrictJson, a
ValueError whose message names the reason; callers map it to their own error (InvalidInput, 400).
"""

import gc
import json
import math
import re
from typing import Any

MAX_DEPTH = 64
"""Far more than any colibri document needs, far less than the interpreter's recursion limit."""
MAX_INT = 2**63
"""JSON integers must fit a signed 64-bit column: |n| < 2**63."""

_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)  # the unrolled loop: no per-character branch
_BRACES = bytes.maketrans(b"{}", b"[]")
_NOT_BRACKETS = bytes(c for c in range(256) if c not in b"[]{}")
_ESCAPED_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]")


class NotStrictJson(ValueError):
    """The text is not strict JSON (the message says why, never quoting more than 200 characters)."""


def _no_constant(name: str) -> Any:
    raise NotStrictJson(f"{name} is not JSON (only finite numbers are)")


def _bounded_int(text: str) -> int:
    value = int(text)
    if not -MAX_INT < value < MAX_INT:
        raise NotStrictJson("an integer beyond 64 bits")
    return value


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise NotStrictJson(f"{text[:40]} is not a finite number")
    return value


_DECODER = json.JSONDecoder(parse_constant=_no_constant, parse_int=_bounded_int, parse_float=_finite_float)
"""Built once: ``json.loads`` with hooks builds a decoder per call, which the daemon's hot path felt."""


def _decode(text: str, decoder: json.JSONDecoder = _DECODER) -> Any:
    """``decoder.decode`` with the cyclic garbage collector paused: a decoded document holds no
    cycle, so reference counting frees all of it, and a body of 300,000 empty lists no longer runs
    400 collections of the young generation (and full ones over the daemon's whole heap) while it
    is built, which took 60% of its parse time."""
    collecting = gc.isenabled()
    if collecting:
        gc.disable()
    try:
        return decoder.decode(text)
    finally:
        if collecting:
            gc.enable()


_PLAIN = json.JSONDecoder()


def load_checked(text: str) -> Any:
    """A document colibri checked when it came in and stored (a task's payload or result): decoded
    as it is, with the collector paused as ``loads`` does (a tenant's 256 KiB payload of empty
    lists is 87,000 of them, decoded again for each claim and each look at the task)."""
    return _decode(text, _PLAIN)


def depth(text: str, limit: int | None = None) -> int:
    """The deepest nesting of ``[``/``{`` outside strings (an upper bound for invalid text); past
    ``limit``, any number above it.

    At C speed, never a Python loop per character (the daemon runs this on its event loop for any
    body of more than ``MAX_DEPTH`` brackets; the per-character scan cost 80 ms per MiB): strings are
    cut out, the brackets kept (``{}`` as ``[]``: for nesting depth their kind does not matter), and
    each pass of ``replace("[]", "")`` removes the innermost level, so the passes are the depth.
    """
    if '"' in text:
        text = _STRING.sub("", text)
    brackets = text.encode("utf-8", "surrogatepass").translate(_BRACES, _NOT_BRACKETS)
    level = 0
    while brackets and (limit is None or level <= limit):
        shorter = brackets.replace(b"[]", b"")
        if len(shorter) == len(brackets):  # unbalanced (invalid JSON): each opener left may nest
            return level + shorter.count(b"[")
        brackets, level = shorter, level + 1
    return level


def loads(data: str | bytes, *, max_depth: int = MAX_DEPTH) -> Any:
    """``data`` (UTF-8 bytes, or text) as strict JSON.  Raises NotStrictJson."""
    try:
        text = data.decode() if isinstance(data, bytes) else data
        text.encode()  # a raw lone surrogate in text (bytes were checked by the strict decode)
    except UnicodeError:
        raise NotStrictJson("not valid UTF-8 (or a lone surrogate)") from None
    if text.count("[") + text.count("{") > max_depth and (found := depth(text, max_depth)) > max_depth:
        raise NotStrictJson(f"nested too deeply ({found} levels or more; at most {max_depth})")
    try:
        value = _decode(text)
        if "\\u" in text and _ESCAPED_SURROGATE.search(text):
            json.dumps(value, ensure_ascii=False).encode()  # a lone escaped surrogate cannot be encoded
    except NotStrictJson:
        raise
    except UnicodeError:
        raise NotStrictJson("a lone surrogate (\\ud800-\\udfff) is not valid text") from None
    except (ValueError, RecursionError) as exc:
        raise NotStrictJson(str(exc)[:200]) from None
    return value
