"""This host's entry MAC key for the CLI's origin, read only when a command writes an entry (the
read-only commands never touch the root-only key dir, nor import the key code)."""

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from colibri.settings import Settings


def vouch(settings: "Settings") -> Callable[[], bytes]:
    """A reader of this host's ``state_dir/audit/entry.key`` (made on first use), read once."""
    found: list[bytes] = []
    state_dir, host = settings.state_dir, settings.host

    def read() -> bytes:
        if not found:
            from colibri.adapters.audit_keys import KeyDir

            found.append(KeyDir(state_dir / "audit", host).entry_key())
        return found[0]

    return read
