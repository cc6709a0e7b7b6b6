"""The only module that prints.  Human text or the ``--json`` envelope, on stdout; errors on stderr.

The JSON envelope (stable, version 1):
    success: {"ok": true, "data": <payload>}
    failure: {"ok": false, "error": {"type": "TenantNotFound", "code": 4, "message": "..."}}
With ``--json`` the failure envelope goes to stdout too, so a script reads one document either way;
the exit code is the same as without ``--json``.
"""

import json
import sys
from collections.abc import Iterable, Sequence
from typing import Any


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps({"ok": True, "data": data}, indent=2, sort_keys=True) + "\n")


def emit_json_line(data: Any) -> None:
    """One compact JSON object on a line (progress streams)."""
    sys.stdout.write(json.dumps(data, sort_keys=True, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def error(message: str, *, as_json: bool, kind: str = "ColibriError", code: int = 1) -> None:
    if as_json:
        document = {"ok": False, "error": {"type": kind, "code": code, "message": message}}
        sys.stdout.write(json.dumps(document, indent=2, sort_keys=True) + "\n")
    else:
        sys.stderr.write(f"colibri: {message}\n")


def line(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def note(text: str) -> None:
    """A remark for the operator that is not the command's result (stderr)."""
    sys.stderr.write(text + "\n")


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    """An aligned plain-text table, like ``jls``: no colour, easy to grep and awk."""
    cells = [[("-" if value is None else str(value)) for value in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    out = [_row(headers, widths)] + [_row(row, widths) for row in cells]
    sys.stdout.write("\n".join(out) + "\n")


def _row(values: Sequence[str], widths: Sequence[int]) -> str:
    return "  ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)).rstrip()


def fields(record: dict[str, Any], keys: Sequence[str]) -> None:
    """``key: value`` lines for one record (show commands)."""
    width = max(len(k) for k in keys)
    for key in keys:
        value = record.get(key)
        sys.stdout.write(f"{key.ljust(width)}  {'-' if value is None else value}\n")


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
        elif self._tty:
            self._rich(tenant, step, state, detail)
        elif state != "start":
            sys.stdout.write(f"[{tenant}] {step}: {state}{(' - ' + detail) if detail else ''}\n")
            sys.stdout.flush()

    def _rich(self, tenant: str, step: str, state: str, detail: str) -> None:
        from rich.console import Console

        console = Console(highlight=False)
        if state == "start":
            self.close()
            self._status = console.status(f"[{tenant}] {step} ...")
            self._status.start()
            return
        self.close()
        mark = {"done": "[green]ok[/]", "fail": "[red]FAILED[/]", "skip": "skipped"}.get(state, state)
        console.print(f"[{tenant}] {step}: {mark}{(' - ' + detail) if detail else ''}", markup=True)

    def close(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None
