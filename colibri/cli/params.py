"""Parsing of command-line values that are documents: refused with InvalidInput, never a traceback."""

from typing import Any

from colibri import strictjson
from colibri.errors import InvalidInput

MAX_JSON_DEPTH = 64
"""How deeply a JSON value given on the command line may nest (the daemon's own limit is its own)."""


def json_document(option: str, text: str) -> Any:
    """``text`` as a JSON document: strict JSON only (colibri/strictjson.py: no NaN or Infinity, no
    number beyond a double or an integer beyond 64 bits, no lone surrogate), nested at most
    MAX_JSON_DEPTH deep.  Raises InvalidInput."""
    try:
        return strictjson.loads(text, max_depth=MAX_JSON_DEPTH)
    except strictjson.NotStrictJson as exc:
        raise InvalidInput(f"{option} is not valid JSON: {exc}") from None
