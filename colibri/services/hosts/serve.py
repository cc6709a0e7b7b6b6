"""``colibri remote serve``: answer the orchestrator's framed requests until the channel closes.

It reads one request frame at a time from stdin, runs its op (``ops.handlers``) and writes one
answer frame to stdout (``colibri.adapters.remote_wire``).  An op's ColibriError is its error
answer; any other exception is a bug, answered as a one-line internal error without its text.  A
frame that breaks the protocol gets an error answer (id null) and ends the loop: the stream cannot
be trusted to be in step any more.  Nothing sent or answered is logged.

An op that runs long (``spawn_many``) streams its progress: while it runs, ``progress_sink()``
gives it a function that writes a progress frame of the current request (thread-safe; a frame
that cannot be written, the orchestrator gone, is dropped and the op goes on, to converge).
"""

import contextlib
import contextvars
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any, BinaryIO

from colibri.adapters import remote_wire
from colibri.errors import ColibriError, InvalidInput

Handler = Callable[[Mapping[str, Any]], dict[str, Any]]
Sink = Callable[[Mapping[str, Any]], None]

NO_OP = "this host's colibri has no op"
"""How an answer to an op this host does not know begins (the orchestrator then falls back)."""

_SINK: contextvars.ContextVar[Sink | None] = contextvars.ContextVar("colibri_progress_sink", default=None)


def progress_sink() -> Sink:
    """Where the running op writes its progress (a no-op when its caller takes none).  Take it in
    the op's own thread: a thread the op starts does not inherit it."""
    sink = _SINK.get()
    return sink if sink is not None else _drop


def _drop(item: Mapping[str, Any]) -> None:
    pass


@contextlib.contextmanager
def progress_to(sink: Sink) -> Iterator[None]:
    """Run an op with ``sink`` as its ``progress_sink()`` (the serve loop's, or a test's link)."""
    token = _SINK.set(sink)
    try:
        yield
    finally:
        _SINK.reset(token)


def serve(stdin: BinaryIO, stdout: BinaryIO, handlers: Mapping[str, Handler]) -> None:
    """Serve until EOF; a protocol violation is answered, then raised (WireError)."""
    lock = threading.Lock()  # an op's threads write progress frames; the answer comes after them
    while True:
        try:
            frame = remote_wire.read_frame(stdin)
            if frame is None:
                return
            ident, op, args = remote_wire.parse_request(frame)
        except remote_wire.WireError as exc:
            _write(stdout, remote_wire.error_answer(None, exc))
            raise

        def sink(item: Mapping[str, Any], ident: int = ident) -> None:
            with contextlib.suppress(OSError, ValueError, remote_wire.WireError), lock:
                _write(stdout, remote_wire.progress(ident, item))

        with progress_to(sink):
            answer = _answer(ident, op, args, handlers)
        with lock:
            _write(stdout, answer)


def _answer(ident: int, op: str, args: Mapping[str, Any], handlers: Mapping[str, Handler]) -> bytes:
    handler = handlers.get(op)
    try:
        if handler is None:
            raise InvalidInput(f"{NO_OP} {op!r} (is it older than the orchestrator's?)")
        result = handler(args)
        return remote_wire.answer(ident, result)
    except ColibriError as exc:
        return remote_wire.error_answer(ident, exc)
    except Exception as exc:  # a bug on this side: its text may hold an arg, so only the type goes back
        return remote_wire.error_answer(ident, ColibriError(f"internal error ({type(exc).__name__}) in op {op}"))


def _write(stdout: BinaryIO, frame: bytes) -> None:
    stdout.write(frame)
    stdout.flush()
