"""The framing of ``colibri remote serve``: what the orchestrator and a remote host say over a kept
SSH channel.  Pure and stdlib only; both sides use it.

One JSON object per line (UTF-8, ``\\n``-terminated, no raw newline inside since JSON escapes it):

    request  {"id": 7, "op": "ping", "args": {...}}
    answer   {"id": 7, "result": {...}}
    or       {"id": 7, "error": {"type": "TenantNotFound", "code": 4, "message": "..."}}
    progress {"id": 7, "progress": {...}}     (before the answer, only from an op that streams)

The error object is the daemon API's envelope (``colibri.error_envelope.error_from_api`` reads it).  A frame
is at most ``MAX_FRAME`` bytes; a longer, non-JSON, non-object or malformed frame is a
``WireError`` and the reader closes the connection (it cannot know where the next frame starts).
Args may carry a tenant's rendered ``.env``: nothing here puts a frame's content in a message.
"""

import json
import re
from collections.abc import Mapping
from typing import Any, Protocol

from colibri.errors import ColibriError

MAX_FRAME = 1 << 20
"""The longest frame, its newline included (a rendered .env is far shorter)."""
MAX_PROGRESS_FRAME = 16 * 1024
"""The longest progress frame (a step report is far shorter)."""
MAX_ID = 2**53
_OP = re.compile(r"[a-z][a-z0-9_.-]{0,63}", re.ASCII)


class WireError(ColibriError):
    """A frame that is not one of this protocol's (its content is never in the message)."""

    exit_code = 13  # a RemoteError's: the remote peer (or the link) misbehaved


class Readable(Protocol):
    def readline(self, size: int = -1, /) -> bytes: ...


def encode(message: Mapping[str, Any]) -> bytes:
    """One frame: compact JSON, ASCII only, newline-terminated; refused when over ``MAX_FRAME``."""
    try:
        raw = json.dumps(message, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode("ascii")
    except (TypeError, ValueError):
        raise WireError("a frame holds a value that is not plain JSON") from None
    if len(raw) + 1 > MAX_FRAME:
        raise WireError(f"a frame of {len(raw) + 1} bytes is over the {MAX_FRAME}-byte limit")
    return raw + b"\n"


def request(ident: int, op: str, args: Mapping[str, Any]) -> bytes:
    return encode({"id": ident, "op": op, "args": dict(args)})


def answer(ident: int, result: Mapping[str, Any]) -> bytes:
    return encode({"id": ident, "result": dict(result)})


def progress(ident: int, item: Mapping[str, Any]) -> bytes:
    """A progress frame of request ``ident`` (sent before its answer); refused when over
    ``MAX_PROGRESS_FRAME``."""
    raw = encode({"id": ident, "progress": dict(item)})
    if len(raw) > MAX_PROGRESS_FRAME:
        raise WireError(f"a progress frame of {len(raw)} bytes is over the {MAX_PROGRESS_FRAME}-byte limit")
    return raw


def error_answer(ident: int | None, exc: ColibriError) -> bytes:
    error = {"type": type(exc).__name__, "code": exc.exit_code, "message": exc.message[:2000]}
    return encode({"id": ident, "error": error})


def read_frame(stream: Readable) -> dict[str, Any] | None:
    """The next frame's object, or None at a clean end of stream (EOF before any byte)."""
    raw = stream.readline(MAX_FRAME + 1)
    if not raw:
        return None
    if len(raw) > MAX_FRAME or not raw.endswith(b"\n"):
        if len(raw) > MAX_FRAME:
            raise WireError(f"a frame over the {MAX_FRAME}-byte limit; the connection is closed")
        raise WireError("the stream ended inside a frame")
    return decode(raw)


def decode(raw: bytes) -> dict[str, Any]:
    """A frame's bytes (its newline included or not) as a JSON object."""
    if len(raw) > MAX_FRAME:
        raise WireError(f"a frame over the {MAX_FRAME}-byte limit; the connection is closed")
    try:
        value = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise WireError("a frame that is not UTF-8 JSON; the connection is closed") from None
    if not isinstance(value, dict):
        raise WireError("a frame that is not a JSON object; the connection is closed")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(name)


def _ident(frame: Mapping[str, Any]) -> int:
    ident = frame.get("id")
    if not isinstance(ident, int) or isinstance(ident, bool) or not 0 <= ident < MAX_ID:
        raise WireError("a frame without a valid id")
    return ident


def parse_request(frame: Mapping[str, Any]) -> tuple[int, str, dict[str, Any]]:
    """``(id, op, args)`` of a request frame; anything else is a WireError."""
    ident = _ident(frame)
    op, args = frame.get("op"), frame.get("args", {})
    if set(frame) - {"id", "op", "args"}:
        raise WireError("a request with unknown fields")
    if not isinstance(op, str) or not _OP.fullmatch(op):
        raise WireError("a request whose op is not a name")
    if not isinstance(args, dict):
        raise WireError("a request whose args are not an object")
    return ident, op, args


def parse_progress(frame: Mapping[str, Any], ident: int) -> dict[str, Any] | None:
    """A progress frame's object for request ``ident``; None when ``frame`` is not a progress
    frame (an answer, read by ``parse_answer``).  The reader bounds its size (``MAX_PROGRESS_FRAME``)."""
    if "progress" not in frame:
        return None
    item = frame["progress"]
    if set(frame) != {"id", "progress"} or _ident(frame) != ident or not isinstance(item, dict):
        raise WireError("a progress frame that is not this request's; the connection is closed")
    return item


def parse_answer(frame: Mapping[str, Any]) -> tuple[int, dict[str, Any] | None, dict[str, Any] | None]:
    """``(id, result, error)`` of an answer frame: exactly one of result and error is set."""
    ident = _ident(frame)
    result, error = frame.get("result"), frame.get("error")
    if set(frame) - {"id", "result", "error"} or (result is None) == (error is None):
        raise WireError("an answer that is neither a result nor an error")
    if result is not None and not isinstance(result, dict):
        raise WireError("an answer whose result is not an object")
    if error is not None and not (isinstance(error, dict) and isinstance(error.get("message"), str)):
        raise WireError("an answer whose error is not an error envelope")
    return ident, result, error
