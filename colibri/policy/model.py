"""A tenant's spawn policy: may its agents ask for children, how many, how deep, how often, of what.

Off by default: a tenant without a policy is denied (rule ``default-off``).  The allow-lists hold
names, or ``*`` for any; an empty list allows none of that kind (a request that asks for no
template, no capability, no skill and no host passes them all).  ``max_depth`` is relative to the
tenant: 1 lets its children be made but not spawn themselves.  A child's policy can only narrow
its lineage's (``widened``): what a lineage allows is what every ancestor allows (``Effective``).
"""

import re
from dataclasses import dataclass, field, replace

from colibri.errors import InvalidInput

ANY = "*"
MAX_ITEMS = 64  # names in one allow-list
MAX_NAME = 64
MAX_DEPTH = 8  # the deepest lineage colibri follows (a deeper or cyclic one is denied)
MAX_CHILDREN = 1000
MAX_RATE = 100_000
KINDS = ("templates", "capabilities", "skills", "hosts")
DEFAULT_MAX_CHILDREN = 3
DEFAULT_MAX_DEPTH = 1
DEFAULT_RATE = 10
DEFAULT_PERIOD = 3600
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,63}")
_PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_RATE = re.compile(r"(\d{1,6})/(\d{0,6})([smhd])")


@dataclass(frozen=True)
class SpawnPolicy:
    """One tenant's own policy (a row of ``spawn_policies``)."""

    tenant: str
    allowed: bool = False
    max_children: int = DEFAULT_MAX_CHILDREN
    max_depth: int = DEFAULT_MAX_DEPTH
    rate: int = DEFAULT_RATE  # requests (denied ones too) ...
    period: int = DEFAULT_PERIOD  # ... per this many seconds
    templates: tuple[str, ...] = ()
    capabilities: tuple[str, ...] = ()
    skills: tuple[str, ...] = ()
    hosts: tuple[str, ...] = ()

    def names(self, kind: str) -> tuple[str, ...]:
        value: tuple[str, ...] = getattr(self, kind)
        return value

    def view(self) -> dict[str, object]:
        return {
            "tenant": self.tenant,
            "allowed": self.allowed,
            "max_children": self.max_children,
            "max_depth": self.max_depth,
            "rate": f"{self.rate}/{period_text(self.period)}",
            **{kind: list(self.names(kind)) for kind in KINDS},
        }


def valid_name(name: str) -> bool:
    """A name an allow-list or a request may hold (never ``*``: that is the lists' own)."""
    return _NAME.fullmatch(name) is not None


def permits(allowed: tuple[str, ...], name: str) -> bool:
    return ANY in allowed or name in allowed


@dataclass(frozen=True)
class Effective:
    """What a lineage (root first, the tenant last) allows together: the narrowest of each."""

    depth: int  # the tenant's depth (a root tenant: 0)
    allowed: bool  # every tenant of the lineage allows self-spawn
    depth_limit: int  # the deepest a descendant may be (absolute)
    max_children: int
    rate_per_hour: float
    lists: dict[str, tuple[str, ...]] = field(default_factory=dict)


def effective(lineage: tuple[SpawnPolicy, ...]) -> Effective:
    """The narrowest of every policy in ``lineage`` (none missing: the caller denied that)."""
    lists: dict[str, tuple[str, ...]] = {}
    for kind in KINDS:
        found: tuple[str, ...] = (ANY,)
        for policy in lineage:
            own = policy.names(kind)
            found = own if ANY in found else (found if ANY in own else tuple(n for n in found if n in own))
        lists[kind] = found
    return Effective(
        depth=len(lineage) - 1,
        allowed=all(p.allowed for p in lineage),
        depth_limit=min(i + p.max_depth for i, p in enumerate(lineage)),
        max_children=min(p.max_children for p in lineage),
        rate_per_hour=min(p.rate * 3600 / p.period for p in lineage),
        lists=lists,
    )


def widened(policy: SpawnPolicy, parent: Effective) -> list[str]:
    """What ``policy`` (a child's, at ``parent.depth + 1``) allows beyond its parent's lineage."""
    wider: list[str] = []
    if policy.allowed and not parent.allowed:
        wider.append("--allow while the parent's lineage denies self-spawn")
    if policy.max_children > parent.max_children:
        wider.append(f"max-children {policy.max_children} > {parent.max_children}")
    if parent.depth + 1 + policy.max_depth > parent.depth_limit:
        wider.append(f"max-depth {policy.max_depth} > {max(0, parent.depth_limit - parent.depth - 1)}")
    if policy.rate * 3600 / policy.period > parent.rate_per_hour + 1e-9:
        wider.append(f"rate {policy.rate}/{period_text(policy.period)} is more than the parent's")
    for kind in KINDS:
        theirs, own = parent.lists[kind], policy.names(kind)
        if ANY in theirs:
            continue
        extra = [n for n in own if n not in theirs]
        if extra:
            wider.append(f"{kind} {', '.join(extra)} not allowed to the parent")
    return wider


def period_text(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            count = seconds // size
            return unit if count == 1 else f"{count}{unit}"
    return f"{seconds}s"


def parse_rate(text: str) -> tuple[int, int]:
    """``N/PERIOD`` (``10/h``, ``5/10m``, ``100/d``): N requests per that many seconds."""
    found = _RATE.fullmatch(text.strip())
    if found is None:
        raise InvalidInput(f"invalid rate {text[:40]!r}: give N/PERIOD, e.g. 10/h, 5/10m, 100/d (units s, m, h, d)")
    count, many, unit = int(found.group(1)), int(found.group(2) or 1), found.group(3)
    period = many * _PERIODS[unit]
    if not 1 <= count <= MAX_RATE or not 1 <= period <= 30 * 86400:
        raise InvalidInput(f"invalid rate {text[:40]!r}: 1 to {MAX_RATE} requests per 1 s to 30 d")
    return count, period


def parse_names(kind: str, text: str) -> tuple[str, ...]:
    """A comma-separated allow-list (``*``: any; empty: none), sorted, each name checked."""
    names = sorted({n.strip() for n in text.split(",") if n.strip()})
    if len(names) > MAX_ITEMS:
        raise InvalidInput(f"invalid --{kind}: {len(names)} names; at most {MAX_ITEMS}")
    for name in names:
        if name != ANY and not _NAME.fullmatch(name):
            raise InvalidInput(
                f"invalid --{kind} name {name[:MAX_NAME]!r}: letters, digits and . _ : / @ + -, at most {MAX_NAME}"
            )
    return (ANY,) if ANY in names else tuple(names)


def checked(policy: SpawnPolicy) -> SpawnPolicy:
    """``policy`` if its numbers are in range, else InvalidInput naming the first that is not."""
    if not 0 <= policy.max_children <= MAX_CHILDREN:
        raise InvalidInput(f"invalid --max-children {policy.max_children}: 0 to {MAX_CHILDREN}")
    if not 0 <= policy.max_depth <= MAX_DEPTH:
        raise InvalidInput(f"invalid --max-depth {policy.max_depth}: 0 to {MAX_DEPTH}")
    return replace(policy)
