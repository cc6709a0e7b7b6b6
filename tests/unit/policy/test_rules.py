"""The rule module, a table of cases (pure: no store)."""

import pytest

from colibri.errors import InvalidInput
from colibri.policy.model import SpawnPolicy, effective, parse_names, parse_rate, widened
from colibri.policy.rules import RULES, Inputs, evaluate

ON = SpawnPolicy("q", allowed=True, max_children=2, max_depth=1, rate=5, period=3600, capabilities=("echo",))
ANYTHING = SpawnPolicy(
    "q", allowed=True, max_depth=3, templates=("*",), capabilities=("*",), skills=("*",), hosts=("*",)
)
CHILD = SpawnPolicy("w", allowed=True, max_depth=1, capabilities=("echo",))
WIDE_CHILD = SpawnPolicy("w", allowed=True, capabilities=("*",))


def inputs(policies: dict[str, SpawnPolicy], lineage: tuple[str, ...] = ("q",), **over: object) -> Inputs:
    base: dict[str, object] = {"forbid_all": False, "children": 0, "recent": 1}
    return Inputs(lineage=lineage, policies=policies, **(base | over))  # type: ignore[arg-type]


CASES = [
    # (what, inputs, allowed, rule, depth)
    ("no policy", inputs({}), False, "default-off", 1),
    ("denied", inputs({"q": SpawnPolicy("q")}), False, "tenant-off", 1),
    ("allowed", inputs({"q": ON}), True, "allow", 1),
    ("global switch wins", inputs({"q": ANYTHING}, forbid_all=True), False, "global-forbid", 1),
    ("global switch over no policy", inputs({}, forbid_all=True), False, "global-forbid", 1),
    ("over quota", inputs({"q": ON}, children=2), False, "max-children", 1),
    ("one below quota", inputs({"q": ON}, children=1), True, "allow", 1),
    ("rate: the 5th passes", inputs({"q": ON}, recent=5), True, "allow", 1),
    ("rate: the 6th is denied", inputs({"q": ON}, recent=6), False, "rate", 1),
    ("rate before quota", inputs({"q": ON}, recent=6, children=2), False, "rate", 1),
    ("depth 1: a child cannot spawn", inputs({"q": ON, "w": CHILD}, ("q", "w")), False, "max-depth", 2),
    ("depth 2 lets the child", inputs({"q": ANYTHING, "w": CHILD}, ("q", "w")), True, "allow", 2),
    ("max depth 0: no children", inputs({"q": SpawnPolicy("q", allowed=True, max_depth=0)}), False, "max-depth", 1),
    ("ancestor off", inputs({"q": SpawnPolicy("q", max_depth=3), "w": CHILD}, ("q", "w")), False, "ancestor-off", 2),
    ("ancestor missing", inputs({"w": CHILD}, ("q", "w")), False, "ancestor-off", 2),
    ("capability allowed", inputs({"q": ON}, capabilities=("echo",)), True, "allow", 1),
    ("capability outside", inputs({"q": ON}, capabilities=("echo", "shell")), False, "capability", 1),
    ("template with an empty list", inputs({"q": ON}, template="small"), False, "template", 1),
    ("skill outside", inputs({"q": ON}, skills=("mother",)), False, "skill", 1),
    ("host outside", inputs({"q": ON}, host="osb"), False, "host", 1),
    ("anything with *", inputs({"q": ANYTHING}, template="t", capabilities=("a", "b"), skills=("s",), host="h"),
     True, "allow", 1),
    ("the lineage's list narrows: ancestor lacks it",
     inputs({"q": SpawnPolicy("q", allowed=True, max_depth=2), "w": WIDE_CHILD}, ("q", "w"), capabilities=("echo",)),
     False, "capability", 2),
    ("a loop in the lineage", inputs({"q": ON}, broken=True), False, "lineage", 1),
    ("a control character in a name", inputs({"q": ANYTHING}, capabilities=("a\x1b[2J",)), False, "request", 1),
    ("too many names", inputs({"q": ANYTHING}, skills=tuple(f"s{n}" for n in range(65))), False, "request", 1),
    ("a '*' asked for is no name", inputs({"q": ANYTHING}, capabilities=("*",)), False, "request", 1),
]  # fmt: skip


@pytest.mark.parametrize(("what", "given", "allowed", "rule", "depth"), CASES, ids=[c[0] for c in CASES])
def test_rule(what: str, given: Inputs, allowed: bool, rule: str, depth: int) -> None:
    verdict = evaluate(given)
    assert (verdict.allowed, verdict.rule, verdict.depth) == (allowed, rule, depth), verdict.reason
    assert verdict.rule in RULES and verdict.reason and "\n" not in verdict.reason


def test_every_rule_has_a_case() -> None:
    assert {c[3] for c in CASES} == set(RULES)


def test_effective_and_widened() -> None:
    lineage = effective((ANYTHING, SpawnPolicy("w", allowed=True, max_depth=1, capabilities=("echo", "fetch"))))
    assert lineage.depth == 1 and lineage.depth_limit == 2 and lineage.lists["capabilities"] == ("echo", "fetch")
    assert lineage.lists["templates"] == ()  # the child's empty list narrows the parent's "*"
    assert widened(SpawnPolicy("g", allowed=True, max_depth=0, capabilities=("echo",)), lineage) == []
    wider = widened(SpawnPolicy("g", allowed=True, max_depth=1, max_children=9, capabilities=("*",)), lineage)
    assert wider == ["max-children 9 > 3", "max-depth 1 > 0", "capabilities * not allowed to the parent"]
    slower = effective((SpawnPolicy("q", allowed=True, rate=10, period=3600),))
    assert widened(SpawnPolicy("w", allowed=True, max_depth=0, rate=1, period=60), slower) != []  # 60/h > 10/h
    assert widened(SpawnPolicy("w", allowed=True, max_depth=0, rate=5, period=1800), slower) == []  # 10/h


@pytest.mark.parametrize(
    ("text", "found"), [("10/h", (10, 3600)), ("5/10m", (5, 600)), ("100/d", (100, 86400)), (" 1/30s ", (1, 30))]
)
def test_parse_rate(text: str, found: tuple[int, int]) -> None:
    assert parse_rate(text) == found


@pytest.mark.parametrize("text", ["10", "0/h", "10/w", "-1/h", "1/0h", "10/h;rm", "1/31d"])
def test_parse_rate_refuses(text: str) -> None:
    with pytest.raises(InvalidInput):
        parse_rate(text)


def test_parse_names() -> None:
    assert parse_names("skills", "b, a,,a") == ("a", "b")
    assert parse_names("skills", "a,*") == ("*",) and parse_names("skills", "") == ()
    with pytest.raises(InvalidInput):
        parse_names("skills", "ok,bad\x1bname")
    with pytest.raises(InvalidInput):
        parse_names("skills", ",".join(f"s{n}" for n in range(65)))
