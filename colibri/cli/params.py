"""Parsing of command-line values that are documents: refused with InvalidInput, never a traceback."""

import json
import math
from typing import Any

from colibri.errors import InvalidInput

MAX_JSON_DEPTH = 64
"""How deeply a JSON value given on the command line may nest (the daemon's own limit is its own)."""


def json_document(option: str, text: str) -> Any:
    """``text`` as a JSON document: strict JSON only (no NaN or Infinity, no number that does not fit
    a double, no lone surrogate), nested at most MAX_JSON_DEPTH deep.  Raises InvalidInput."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(f"{option} is not valid UTF-8 (or holds a lone surrogate)") from None
    depth = _depth(text)
    if depth > MAX_JSON_DEPTH:
        raise InvalidInput(f"{option} is nested too deeply ({depth} levels; at most {MAX_JSON_DEPTH})")
    try:
        document = json.loads(text, parse_constant=_no_constant, parse_float=_finite)
    except InvalidInput as exc:
        raise InvalidInput(f"{option} is not valid JSON: {exc}") from None
    except (ValueError, RecursionError) as exc:
        raise InvalidInput(f"{option} is not valid JSON: {str(exc)[:200]}") from None
    _check_strings(option, document)
    return document


def _depth(text: str) -> int:
    """The deepest nesting of ``[``/``{`` outside strings (an upper bound for invalid text)."""
    deepest = level = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            level += 1
            deepest = max(deepest, level)
        elif ch in "]}":
            level -= 1
    return deepest


def _no_constant(name: str) -> Any:
    raise InvalidInput(f"{name} is not JSON (only finite numbers are)")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise InvalidInput(f"{text[:40]} is not a finite number")
    return value


def _check_strings(option: str, value: Any) -> None:
    """A ``\\ud800`` escape decodes to a lone surrogate, which no UTF-8 encoder will send."""
    if isinstance(value, str):
        strings = [value]
    elif isinstance(value, dict):
        strings = list(value)
        for item in value.values():
            _check_strings(option, item)
    elif isinstance(value, list):
        strings = []
        for item in value:
            _check_strings(option, item)
    else:
        return
    for text in strings:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidInput(f"{option} holds a lone surrogate (\\ud800-\\udfff): not valid text") from None
