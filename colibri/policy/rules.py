"""The spawn rules: one request and what the store holds -> allowed or not, by which rule, why.

Pure and ordered: the first rule that denies decides; a request that passes them all is allowed
by rule ``allow``.  The order (an operator reads the rule's name in the audit):

    global-forbid   the global switch forbids all self-spawn (it wins over everything)
    request         the request names too many things, or a name colibri does not accept
    lineage         the parent's lineage is deeper than colibri follows, or loops
    default-off     the requesting tenant has no policy (self-spawn is off by default)
    tenant-off      its policy says --deny
    ancestor-off    an ancestor has no policy or says --deny (a child never exceeds its lineage)
    rate            over its rate (requests per period, denied ones counted, this one included)
    max-depth       the child would be deeper than its tenant's or an ancestor's max depth allows
    template        the template asked for is not allowed to every tenant of the lineage
    capability      a capability asked for is not ...
    skill           a skill asked for is not ...
    host            the host asked for is not ...
    max-children    the tenant has as many children (reserved or made) as its maximum
"""

from dataclasses import dataclass

from colibri.policy.model import MAX_DEPTH, MAX_ITEMS, SpawnPolicy, permits, valid_name

RULES = (
    "global-forbid", "request", "lineage", "default-off", "tenant-off", "ancestor-off", "rate", "max-depth",
    "template", "capability", "skill", "host", "max-children", "allow",
)  # fmt: skip


@dataclass(frozen=True)
class Inputs:
    """What a decision reads.  ``lineage``: the tenant ids from the root to the requester;
    ``policies``: each one's policy (absent: none)."""

    forbid_all: bool
    lineage: tuple[str, ...]
    policies: dict[str, SpawnPolicy]
    children: int  # the requester's children reserved or made (never the released ones)
    recent: int  # the requester's requests in its current rate window, this one included
    template: str | None = None
    capabilities: tuple[str, ...] = ()
    skills: tuple[str, ...] = ()
    host: str | None = None
    broken: bool = False  # the lineage was cut: deeper than MAX_DEPTH, or a loop


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    rule: str
    reason: str
    depth: int  # the child's depth (the requester's + 1)


def evaluate(inputs: Inputs) -> Verdict:
    depth = len(inputs.lineage)
    requester = inputs.lineage[-1] if inputs.lineage else "?"

    def deny(rule: str, reason: str) -> Verdict:
        return Verdict(False, rule, reason, depth)

    if inputs.forbid_all:
        return deny("global-forbid", "self-spawn is forbidden on every tenant (colibri policy global --forbid)")
    named = [n for n in (inputs.template, inputs.host) if n is not None] + [*inputs.capabilities, *inputs.skills]
    if max(len(inputs.capabilities), len(inputs.skills)) > MAX_ITEMS or not all(map(valid_name, named)):
        return deny("request", f"the request names more than {MAX_ITEMS} of a kind, or a name colibri refuses")
    if inputs.broken or not inputs.lineage:
        return deny("lineage", f"the lineage of {requester} is deeper than {MAX_DEPTH} or loops")
    own = inputs.policies.get(requester)
    if own is None:
        return deny("default-off", f"self-spawn is off for {requester} (no policy; colibri policy set --allow)")
    if not own.allowed:
        return deny("tenant-off", f"self-spawn is denied for {requester} by its policy")
    for ancestor in inputs.lineage[:-1]:
        theirs = inputs.policies.get(ancestor)
        if theirs is None or not theirs.allowed:
            return deny("ancestor-off", f"self-spawn is off for {ancestor}, an ancestor of {requester}")
    if inputs.recent > own.rate:
        return deny("rate", f"{requester} asked {inputs.recent} times in its window; its rate is {own.view()['rate']}")
    for level, tenant in enumerate(inputs.lineage):
        limit = level + inputs.policies[tenant].max_depth
        if depth > limit:
            whose = "its" if tenant == requester else f"its ancestor {tenant}'s"
            return deny("max-depth", f"a child of {requester} would be at depth {depth}; {whose} policy allows {limit}")
    asked = (
        ("template", "templates", (inputs.template,) if inputs.template is not None else ()),
        ("capability", "capabilities", inputs.capabilities),
        ("skill", "skills", inputs.skills),
        ("host", "hosts", (inputs.host,) if inputs.host is not None else ()),
    )
    for rule, kind, names in asked:
        for name in names:
            for tenant in inputs.lineage:
                if not permits(inputs.policies[tenant].names(kind), name):
                    whose = "its" if tenant == requester else f"its ancestor {tenant}'s"
                    return deny(rule, f"{rule} {name!r} is not in {whose} allowed {kind}")
    if inputs.children >= own.max_children:
        return deny("max-children", f"{requester} has {inputs.children} children; its maximum is {own.max_children}")
    return Verdict(
        True,
        "allow",
        f"allowed by the policy of {requester} (child {inputs.children + 1} of {own.max_children}, depth {depth})",
        depth,
    )
