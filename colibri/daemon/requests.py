"""Reading an API request: its JSON object, the scope check, bounded numbers, ids; waiting on it."""

import asyncio
import contextlib
import re
from typing import Any

from colibri.daemon.wire import Request
from colibri.domain import validate_tenant_id
from colibri.errors import InvalidInput, PermissionDenied
from colibri.services.hive.rules import Scope


def body_object(request: Request) -> dict[str, Any]:
    body = request.json()
    if not isinstance(body, dict):
        raise InvalidInput("the body must be a JSON object")
    if _has_nul(body):  # PostgreSQL's text refuses it: as a store error it would look like an outage
        raise InvalidInput("the body holds a NUL character (U+0000), which colibri does not take")
    return body


def _has_nul(value: Any) -> bool:
    """Does any string (key or value) hold U+0000?  (The parser bounds the body's depth.)"""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def claim_check(body: dict[str, Any], scope: Scope) -> None:
    """An agent on tenant A's socket may not name tenant B (the socket decides, not the body)."""
    named = body.get("tenant")
    if "tenant" in body and not isinstance(named, str):
        raise InvalidInput("tenant must be a string (the socket's tenant, or leave it out)")
    if named is not None and scope.kind != "admin" and named != scope.name:
        raise PermissionDenied(f"this socket belongs to {scope.kind} {scope.name}; it cannot act for {named!r}")


_DECIMAL = re.compile(r"[0-9]{1,6}(?:\.[0-9]{1,6})?", re.ASCII)
_INTEGER = re.compile(r"[0-9]{1,6}", re.ASCII)


def bounded(number: float, what: str, low: float, high: float) -> float:
    """``number`` within [low, high], or InvalidInput naming the bounds: never clamped, since a
    client that asked for 5000 and got 1000 would take the 1000 for all there is."""
    if not low <= number <= high:
        raise InvalidInput(f"{what} must be between {low:g} and {high:g}, not {number:g}")
    return number


def query_number(request: Request, name: str, default: float, low: float, high: float, integer: bool = False) -> float:
    """A query parameter as a plain decimal (no sign, exponent, inf or nan) within its bounds."""
    raw = request.query.get(name)
    if raw is None:
        return default
    if not (_INTEGER if integer else _DECIMAL).fullmatch(raw):
        kind = "an integer" if integer else "a number"
        raise InvalidInput(f"{name} must be {kind} between {low:g} and {high:g}, not {raw[:20]!r}")
    return bounded(float(raw), name, low, high)


def tenant_query(request: Request) -> str | None:
    """The ``tenant`` filter of a listing, checked as a tenant id (400 otherwise)."""
    tenant = request.query.get("tenant")
    return None if tenant is None else validate_tenant_id(tenant)


def body_number(value: object, what: str, low: float, high: float) -> float:
    """A JSON number (not a boolean, not a string) within its bounds."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(f"{what} must be a number between {low:g} and {high:g}")
    return bounded(float(value), what, low, high)


async def until(event: asyncio.Event, seconds: float, request: Request) -> None:
    """Wait for ``event``, at most ``seconds``, and no longer than the client stays."""
    conn = request.conn
    if conn is None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), seconds)
        return
    gone = asyncio.Event()
    unwatch = conn.watch(gone.set)
    waits = {asyncio.ensure_future(event.wait()), asyncio.ensure_future(gone.wait())}
    try:
        await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        unwatch()
        for pending in waits:
            pending.cancel()


def task_id_of(request: Request) -> int:
    raw = request.params["task_id"]
    if not raw.isdigit() or len(raw) > 18:
        raise InvalidInput(f"invalid task id {raw[:20]!r}")
    return int(raw)
