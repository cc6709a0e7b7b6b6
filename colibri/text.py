"""Text that a tenant may have chosen, made safe to show: on a terminal, in a log line.

``safe`` replaces every control, format, unassigned or private-use character (C0, DEL, C1 such as
\\x9b CSI, bidi overrides and isolates, zero-width characters, line separators, lone surrogates)
with a visible escape, so a string from a jail can neither drive the operator's terminal nor forge
a line of the daemon's log.  The CLI's renderers and the daemon's log formatter both use it.
"""

import functools
import re
import unicodedata

_UNSAFE_CATEGORIES = frozenset(("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"))
PLAIN = re.compile(r"[ -~]*")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


@functools.lru_cache(maxsize=4096)
def _escape_char(ch: str) -> str:
    if unicodedata.category(ch) not in _UNSAFE_CATEGORIES:
        return ch
    if ch in _NAMED:
        return _NAMED[ch]
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def safe(text: str, *, keep_newlines: bool = False) -> str:
    """``text`` with every control, format, unassigned or private-use character (and a lone
    surrogate) replaced by a visible ``\\xNN`` / ``\\uNNNN`` escape; newlines kept only if asked."""
    if PLAIN.fullmatch(text):
        return text
    if keep_newlines:
        return "\n".join(safe(part) for part in text.split("\n"))
    return "".join(map(_escape_char, text))
