"""The only module that prints.  Human text or the ``--json`` envelope, on stdout; errors on stderr.

The JSON envelope (stable, version 1):
    success: {"ok": true, "data": <payload>}
    failure: {"ok": false, "error": {"type": "TenantNotFound", "code": 4, "message": "..."}}
With ``--json`` the failure envelope goes to stdout too, so a script reads one document either way;
the exit code is the same as without ``--json``.

Every human-readable rendering goes through ``safe``: a string a tenant could have set (an agent's
``mother_version``, a capability, a task's result or error, anything from the daemon or the store)
is shown with each control or format character as a visible escape (C0, DEL, C1 such as \\x9b CSI,
bidi overrides and isolates, zero-width and other format characters, line separators, lone
surrogates), so nothing reaches the operator's terminal as an escape sequence.  JSON output is
ASCII (``\\uXXXX`` for everything outside printable ASCII), so ``--json`` on a terminal is safe too.
"""

import functools
import itertools
import json
import sys
from collections.abc import Iterable, Sequence
from json.encoder import encode_basestring_ascii
from typing import Any

from colibri.errors import ColibriError
from colibri.text import PLAIN, safe


def emit_json(data: Any) -> None:
    sys.stdout.write(_dumps({"ok": True, "data": data}) + "\n")


def _dumps(value: Any) -> str:
    """``json.dumps(value, indent=2, sort_keys=True)``, byte for byte: through orjson where its
    output is the same, else through ``_pretty``."""
    fast = _orjson_dumps(value)
    return fast if fast is not None else _pretty(value)


_NESTED = frozenset((dict, list, tuple))
_PLAIN = frozenset((str, int, bool, type(None))) | _NESTED


def _orjson_dumps(value: Any) -> str | None:
    """orjson's rendering (a tenth of ``_pretty``'s time on 10,000 tenants) where it is the
    stdlib's, else None.  It is only for the plain types, exactly (no float: orjson writes 1e-05 as
    0.00001 and NaN as null; no subclass or other type, which orjson and the stdlib each render
    their own way or refuse), and only when it came out printable ASCII (orjson writes UTF-8 and a
    raw DEL, the stdlib \\u-escapes them).  A non-str key or an int over 64 bits: orjson refuses."""
    try:
        import orjson
    except ImportError:  # an optional speed-up: the stdlib path gives the same bytes
        return None
    if not _plain(value):
        return None
    try:
        raw = orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
    except TypeError:  # orjson.JSONEncodeError is one
        return None
    if not raw.isascii() or b"\x7f" in raw:
        return None
    return raw.decode("ascii")


def _plain(value: Any) -> bool:
    """True when ``value`` and all it holds are of ``_PLAIN``'s exact types: one level of the tree
    at a time, each level's values typed and filtered in C (10,000 records: ~10 ms, a Python walk
    takes twice that)."""
    if type(value) not in _NESTED:
        return type(value) in _PLAIN
    level = [value]
    while level:
        values = list(itertools.chain.from_iterable(c.values() if type(c) is dict else c for c in level))
        kinds = set(map(type, values))
        if not kinds <= _PLAIN:
            return False
        level = list(itertools.compress(values, map(_NESTED.__contains__, map(type, values))))
    return True


def _pretty(value: Any, level: int = 0) -> str:
    """``json.dumps(value, indent=2, sort_keys=True)``, byte for byte, at indent ``level``.

    With ``indent`` the stdlib falls back to its pure-Python encoder, which took longer than the
    query in ``list-tenants --json`` over 10,000 tenants.  The plain values colibri prints (dicts
    with str keys, lists, str, int, bool, None) are rendered here instead, lists of records
    through one %-template per key set; strings still go through the stdlib's C string encoder,
    and anything else (floats, tuples, other keys, subclasses) is the stdlib's output, re-indented.
    """
    kind = type(value)
    if kind is str:
        return encode_basestring_ascii(value)
    if value is None or value is True or value is False:
        return "null" if value is None else ("true" if value else "false")
    if kind is int:
        return int.__repr__(value)
    if kind is list or (kind is dict and all(type(key) is str for key in value)):
        if not value:
            return "[]" if kind is list else "{}"
        if kind is dict:
            return _records([value], level)[0].lstrip(" ")
        if all(type(item) is dict for item in value):
            items = _records(value, level + 1)
        else:
            items = ["  " * (level + 1) + _pretty(item, level + 1) for item in value]
        return "[\n" + ",\n".join(items) + "\n" + "  " * level + "]"
    return json.dumps(value, indent=2, sort_keys=True).replace("\n", "\n" + "  " * level)


def _records(records: list[dict[Any, Any]], level: int) -> list[str]:
    """Dicts rendered at indent ``level`` (their first line indented too), each through a
    %-template made once per set of keys (in the order the dict has them)."""
    out = []
    for record in records:
        found = _template(tuple(record), level)
        if found is None:  # empty, or keys that are not all str: the general path
            out.append("  " * level + _pretty(record, level))
            continue
        keys, template = found
        values = [
            encode_basestring_ascii(v) if type(v) is str else "null" if v is None else _pretty(v, level + 1)
            for v in map(record.__getitem__, keys)
        ]
        out.append(template % tuple(values))
    return out


@functools.lru_cache(maxsize=256)
def _template(order: tuple[Any, ...], level: int) -> tuple[tuple[str, ...], str] | None:
    if not order or not all(type(key) is str for key in order):
        return None
    pad, inner = "  " * level, "  " * (level + 1)
    keys = tuple(sorted(order))
    lines = [f"{inner}{encode_basestring_ascii(key).replace('%', '%%')}: %s" for key in keys]
    return keys, pad + "{\n" + ",\n".join(lines) + "\n" + pad + "}"


def emit_json_failure(data: Any, exc: ColibriError) -> None:
    """A command that failed (wholly or partly) but has a result to report, e.g. a batch with
    per-item outcomes or a reconcile with failed repairs: ``{"ok": false, "data": <the result>,
    "error": {...}}``, the error as in the failure envelope."""
    error = {"type": type(exc).__name__, "code": exc.exit_code, "message": _cut(exc.message)}
    sys.stdout.write(_dumps({"ok": False, "data": data, "error": error}) + "\n")


def emit_json_line(data: Any) -> None:
    """One compact JSON object on a line (progress streams)."""
    sys.stdout.write(json.dumps(data, sort_keys=True, separators=(",", ":")) + "\n")
    sys.stdout.flush()


MAX_ERROR_CHARS = 500
"""An error line shows at most this many characters of its message (a 100,000-character argument
is not echoed back whole)."""


def _cut(message: str) -> str:
    if len(message) > MAX_ERROR_CHARS:
        return f"{message[:MAX_ERROR_CHARS]}... ({len(message) - MAX_ERROR_CHARS} more characters)"
    return message


def error(message: str, *, as_json: bool, kind: str = "ColibriError", code: int = 1) -> None:
    message = _cut(message)
    if as_json:
        document = {"ok": False, "error": {"type": kind, "code": code, "message": message}}
        sys.stdout.write(json.dumps(document, indent=2, sort_keys=True) + "\n")
    else:
        sys.stderr.write(f"colibri: {safe(message)}\n")  # one line, whatever the message holds


def line(text: str = "") -> None:
    sys.stdout.write(safe(text, keep_newlines=True) + "\n")


def note(text: str) -> None:
    """A remark for the operator that is not the command's result (stderr)."""
    sys.stderr.write(safe(text, keep_newlines=True) + "\n")


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    """An aligned plain-text table, like ``jls``: no colour, easy to grep and awk."""
    cells = [[("-" if value is None else str(value)) for value in row] for row in rows]
    if not PLAIN.fullmatch(" ".join(" ".join(row) for row in cells)):  # one scan for the common case
        cells = [[safe(cell) for cell in row] for row in cells]
    widths = [len(h) for h in headers]
    for row in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    out = [_row(headers, widths)] + [_row(row, widths) for row in cells]
    sys.stdout.write("\n".join(out) + "\n")


def _row(values: Sequence[str], widths: Sequence[int]) -> str:
    return "  ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)).rstrip()


def show(data: Any, as_json: bool, *, text: str | None = None, keys: Sequence[str] = ()) -> None:
    """One result: the JSON envelope with ``--json``; else ``text`` as one line, or else the
    ``keys`` of ``data`` that it has as ``key: value`` lines (a dict or list value as compact JSON)."""
    if as_json:
        emit_json(data)
    elif text is not None:
        line(text)
    else:
        shown = {k: (json.dumps(v) if isinstance(v, dict | list) else v) for k, v in data.items()}
        fields(shown, [k for k in keys if k in shown])


def fields(record: dict[str, Any], keys: Sequence[str]) -> None:
    """``key: value`` lines for one record (show commands)."""
    width = max(len(k) for k in keys)
    for key in keys:
        value = record.get(key)
        sys.stdout.write(f"{key.ljust(width)}  {'-' if value is None else safe(str(value))}\n")


class StepPrinter:
    """Shows pipeline steps as they run: a live spinner on a terminal, plain lines otherwise,
    one JSON object per line with ``--json``."""

    def __init__(self, as_json: bool) -> None:
        self._json = as_json
        self._tty = sys.stdout.isatty() and not as_json
        self._status: Any = None

    def __call__(self, tenant: str, step: str, state: str, detail: str) -> None:
        if self._json:
            emit_json_line({"tenant": tenant, "step": step, "state": state, "detail": detail})
            return
        tenant, step, state, detail = safe(tenant), safe(step), safe(state), safe(detail)
        if self._tty:
            self._rich(tenant, step, state, detail)
        elif state != "start":
            sys.stdout.write(f"[{tenant}] {step}: {state}{(' - ' + detail) if detail else ''}\n")
            sys.stdout.flush()

    def _rich(self, tenant: str, step: str, state: str, detail: str) -> None:
        from rich.console import Console
        from rich.markup import escape

        console = Console(highlight=False)
        tenant, detail = escape(tenant), escape(detail)  # "[demo]" is text here, not a style
        if state == "start":
            self.close()
            self._status = console.status(f"\\[{tenant}] {step} ...")
            self._status.start()
            return
        self.close()
        mark = {"done": "[green]ok[/]", "fail": "[red]FAILED[/]", "skip": "skipped"}.get(state, state)
        console.print(f"\\[{tenant}] {step}: {mark}{(' - ' + detail) if detail else ''}", markup=True)

    def close(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None
