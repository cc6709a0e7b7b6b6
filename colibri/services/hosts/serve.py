"""``colibri remote serve``: answer the orchestrator's framed requests until the channel closes.

It reads one request frame at a time from stdin, runs its op (``ops.handlers``) and writes one
answer frame to stdout (``colibri.adapters.remote_wire``).  An op's ColibriError is its error
answer; any other exception is a bug, answered as a one-line internal error without its text.  A
frame that breaks the protocol gets an error answer (id null) and ends the loop: the stream cannot
be trusted to be in step any more.  Nothing sent or answered is logged.
"""

from collections.abc import Callable, Mapping
from typing import Any, BinaryIO

from colibri.adapters import remote_wire
from colibri.errors import ColibriError, InvalidInput

Handler = Callable[[Mapping[str, Any]], dict[str, Any]]


def serve(stdin: BinaryIO, stdout: BinaryIO, handlers: Mapping[str, Handler]) -> None:
    """Serve until EOF; a protocol violation is answered, then raised (WireError)."""
    while True:
        try:
            frame = remote_wire.read_frame(stdin)
            if frame is None:
                return
            ident, op, args = remote_wire.parse_request(frame)
        except remote_wire.WireError as exc:
            _write(stdout, remote_wire.error_answer(None, exc))
            raise
        _write(stdout, _answer(ident, op, args, handlers))


def _answer(ident: int, op: str, args: Mapping[str, Any], handlers: Mapping[str, Handler]) -> bytes:
    handler = handlers.get(op)
    try:
        if handler is None:
            raise InvalidInput(f"this host's colibri has no op {op!r} (is it older than the orchestrator's?)")
        result = handler(args)
        return remote_wire.answer(ident, result)
    except ColibriError as exc:
        return remote_wire.error_answer(ident, exc)
    except Exception as exc:  # a bug on this side: its text may hold an arg, so only the type goes back
        return remote_wire.error_answer(ident, ColibriError(f"internal error ({type(exc).__name__}) in op {op}"))


def _write(stdout: BinaryIO, frame: bytes) -> None:
    stdout.write(frame)
    stdout.flush()
