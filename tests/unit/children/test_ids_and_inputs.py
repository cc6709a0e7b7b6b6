"""A child's id (the tenant-id rules and the prefix rule), the route's input checks, the tree."""

import itertools
import random

import pytest

from colibri.daemon.children import MAX_SKILLS, ask_of, parent_of
from colibri.domain import prefix_clash, validate_tenant_id
from colibri.errors import Conflict, InvalidInput, PermissionDenied
from colibri.services.children.ids import ATTEMPTS, LENGTH, choose_child_id
from colibri.services.children.tree import forest
from colibri.services.hive.rules import MAX_CAPABILITIES, Scope


def test_a_child_id_obeys_the_tenant_id_and_prefix_rules() -> None:
    existing = ["queen", "q", "acme-1", "b7"]
    rng = random.Random(7)
    for _ in range(500):
        child = choose_child_id(existing, rng.choice)
        assert validate_tenant_id(child) == child and len(child) == LENGTH
        assert prefix_clash(child, existing) is None
        assert not child.startswith("queen-")
        existing.append(child)


def test_a_clash_is_drawn_again_and_gives_up_after_its_attempts() -> None:
    draws = itertools.chain("q" * LENGTH, "b" * LENGTH)  # first draw "qqqqqqqq" clashes with "q"
    assert choose_child_id(["q"], lambda _: next(draws)) == "b" * LENGTH
    with pytest.raises(Conflict, match=f"after {ATTEMPTS} draws"):
        choose_child_id(["b"], lambda _: "b")  # every draw starts with an existing id
    with pytest.raises(Conflict):
        choose_child_id(["bbbbbbbbbb"], lambda _: "b")  # every draw is a prefix of an existing id


def test_the_body_is_checked_and_bounded_and_a_parent_in_it_is_ignored() -> None:
    ask = ask_of({"agent_id": "main", "capabilities": ["echo", "sleep@2"], "template": "default",
                  "skills": ["web"], "host": "testhost", "parent": "other", "tenant": "other"})  # fmt: skip
    assert (ask.agent_id, ask.capabilities, ask.template, ask.skills, ask.host) == (
        "main", ("echo", "sleep@2"), "default", ("web",), "testhost")  # fmt: skip
    assert not hasattr(ask, "parent")
    bad: list[dict[str, object]] = [
        {},
        {"agent_id": "../x"},
        {"agent_id": "a", "capabilities": "echo"},
        {"agent_id": "a", "capabilities": [1]},
        {"agent_id": "a", "capabilities": ["echo", "echo@2"]},
        {"agent_id": "a", "capabilities": ["e" * 200]},
        {"agent_id": "a", "capabilities": ["x"] * (MAX_CAPABILITIES + 1)},
        {"agent_id": "a", "capabilities": ["bad name"]},
        {"agent_id": "a", "template": "../../etc"},
        {"agent_id": "a", "template": 3},
        {"agent_id": "a", "skills": ["s"] * (MAX_SKILLS + 1)},
        {"agent_id": "a", "skills": ["s", "s"]},
        {"agent_id": "a", "skills": ["$(id)"]},
        {"agent_id": "a", "host": "not a host"},
        {"agent_id": "a", "host": "h" * 300},
        {"agent_id": "a", "host": ["x"]},
    ]
    for body in bad:
        with pytest.raises(InvalidInput) as caught:
            ask_of(body)
        assert "\n" not in str(caught.value) and len(str(caught.value)) < 200


def test_only_a_tenants_socket_asks_for_children() -> None:
    assert parent_of(Scope("tenant", "queen")) == "queen"
    for scope in (Scope("admin"), Scope("lane", "shared")):
        with pytest.raises(PermissionDenied):
            parent_of(scope)


def test_the_tree_nests_children_under_parents_with_their_agents() -> None:
    rows = [("queen", None, "active"), ("kid1", "queen", "active"), ("kid2", "queen", "spawning"),
            ("grand", "kid1", "active"), ("solo", None, "registered"), ("orphan", "gone", "active")]  # fmt: skip
    agents = [{"key": "queen/main", "tenant": "queen", "agent_id": "main", "state": "active"},
              {"key": "kid1/main", "tenant": "kid1", "agent_id": "main", "state": "stale"},
              {"key": "lane:x/a", "tenant": None, "agent_id": "a", "state": "active"}]  # fmt: skip
    nodes = forest(rows, agents)
    assert [n["tenant"] for n in nodes] == ["queen", "solo", "orphan"]
    queen = nodes[0]
    assert [c["tenant"] for c in queen["children"]] == ["kid1", "kid2"]
    assert queen["agents"] == [{"key": "queen/main", "agent_id": "main", "state": "active"}]
    assert queen["children"][0]["children"][0]["tenant"] == "grand"
    assert queen["children"][0]["agents"][0]["state"] == "stale"
    assert [n["tenant"] for n in forest(rows, agents, "kid1")] == ["kid1"]
    cyclic = [("a", "b", "active"), ("b", "a", "active")]
    assert forest(cyclic, []) == []  # no root: nothing shown rather than a loop
