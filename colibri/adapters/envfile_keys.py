"""The key names of a ``.env`` (for its audit entry), read as python-dotenv reads the file."""

import re

_KEY_LINE = re.compile(r"[ \t]*(?:export[ \t]+)?([A-Za-z_][A-Za-z0-9_]*)[ \t]*=[ \t]*", re.ASCII)
_QUOTED = {"'": re.compile(r"'(?:\\'|[^'])*'"), '"': re.compile(r'"(?:\\"|[^"])*"')}
"""A quoted value as python-dotenv reads it: up to the closing quote, across lines, ``\\'`` kept."""


def key_names(content: bytes, limit: int = 64) -> list[str]:
    """The keys of a ``.env`` as python-dotenv reads it (never a value), sorted, at most ``limit``.

    Only real key lines count: a quoted value runs to its closing quote across lines, so the
    lines of a multi-line value (a PEM key's base64 holds ``=``) are never taken for keys.  A
    quote never closed ends the scan: what follows is that value's, as far as a reader can tell.
    """
    text = content.decode("utf-8", "replace")
    names: set[str] = set()
    pos = 0
    while pos < len(text):
        end = text.find("\n", pos)
        end = len(text) if end < 0 else end
        found = _KEY_LINE.match(text, pos, end)
        if found is not None:  # blank lines and comments match no key
            names.add(found.group(1)[:64])
            start = found.end()
            quoted = _QUOTED.get(text[start : start + 1])
            if quoted is not None:
                closed = quoted.match(text, start)
                if closed is None:
                    break
                end = text.find("\n", closed.end())
                end = len(text) if end < 0 else end
        pos = end + 1
    return sorted(names)[:limit]
