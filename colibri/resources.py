"""Where colibri's shipped trees live: ``jails/`` (templates) and ``skills/`` (the mother skill).

In a source checkout (or an editable install) they sit beside the package; a wheel carries them
inside the package as ``colibri/_data/`` (see pyproject's force-include).
"""

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def shipped(name: str) -> Path:
    for candidate in (_PACKAGE.parent / name, _PACKAGE / "_data" / name):
        if candidate.is_dir():
            return candidate
    return _PACKAGE.parent / name
