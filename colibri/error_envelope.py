"""A ColibriError from its wire form: the daemon API's and a remote host's error envelope
``{"type", "code", "message"}`` back into the class it names (colibri/errors.py holds the tree and
the codes; this is the one way back)."""

from colibri.errors import EXIT_CODES, ColibriError, DaemonError


def _registry() -> dict[str, type[ColibriError]]:
    found: dict[str, type[ColibriError]] = {}
    todo: list[type[ColibriError]] = [ColibriError]
    while todo:
        cls = todo.pop()
        found[cls.__name__] = cls
        todo += cls.__subclasses__()
    return found


def error_from_api(kind: object, code: object, message: str) -> ColibriError:
    """The ColibriError a daemon's error envelope ``{"type", "code", "message"}`` names.

    The one registry is the class tree above (every ColibriError by its name, subclasses defined
    elsewhere included); an unknown type is a DaemonError.  The instance keeps the class's
    attributes and is built without its ``__init__`` (the daemon already wrote the message); an
    envelope whose code differs from the class's own (PartialFailure carries the worst of its
    items) keeps the envelope's code."""
    known = _registry().get(str(kind))
    cls = known or DaemonError
    error: ColibriError = cls.__new__(cls)
    ColibriError.__init__(error, message)
    # an error is never success: a peer's code 0 (a hostile or broken remote) keeps the class's own
    if (
        known
        and isinstance(code, int)
        and not isinstance(code, bool)
        and code in EXIT_CODES
        and code not in (0, cls.exit_code)
    ):
        error.exit_code = code
    return error
