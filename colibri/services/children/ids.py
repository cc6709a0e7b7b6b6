"""A child's tenant id: chosen by colibri, never by the agent that asked for it.

Eight characters, a letter then seven of ``a-z0-9`` (about 2.8e12 ids): it obeys the tenant-id
rules (domain.validate_tenant_id) and the prefix rule (domain.prefix_clash: bastille's target
autocomplete would confuse ``ab`` with ``abc``), so it can never be ``<parent>-1`` or any id that
starts with, or is the start of, another tenant's.  A clash is retried with a fresh draw; after
``ATTEMPTS`` draws (an operator's fleet that holds one-letter ids for every letter) it gives up.
"""

import secrets
from collections.abc import Callable, Collection

from colibri.domain import prefix_clash, validate_tenant_id
from colibri.errors import Conflict

LENGTH = 8
ATTEMPTS = 32
_FIRST = "abcdefghijklmnopqrstuvwxyz"
_REST = _FIRST + "0123456789"


def draw(choice: Callable[[str], str] = secrets.choice) -> str:
    return choice(_FIRST) + "".join(choice(_REST) for _ in range(LENGTH - 1))


def choose_child_id(existing: Collection[str], choice: Callable[[str], str] = secrets.choice) -> str:
    """A fresh id that is none of ``existing`` and no prefix of one, nor one of them its prefix.
    ``existing`` is every tenant id the store holds (removed ones too: a removed tenant's row and
    audit entries keep its id).  Raises Conflict when ``ATTEMPTS`` draws all clash."""
    taken = list(existing)
    for _ in range(ATTEMPTS):
        candidate = validate_tenant_id(draw(choice))
        if candidate not in existing and prefix_clash(candidate, taken) is None:
            return candidate
    raise Conflict(f"no free child tenant id after {ATTEMPTS} draws: the tenant ids' prefixes cover them")
