"""100 agents' requests at once through ChildService (the route's service) against a quota of 5,
on SQLite and on the real PostgreSQL: exactly 5 child tenants, each bound to its reservation, and
95 logged denials (issue 14, "Done when")."""

import threading
from collections import Counter

from sqlalchemy import text

from colibri.services.children.service import Answer, Ask, ChildService
from colibri.services.policy.admin import PolicyAdmin, PolicyChange
from colibri.services.policy.service import SpawnPolicyService
from colibri.store.db import Store
from tests.unit.policy.conftest import template_fixture, world_fixture, world_url_fixture

__all__ = ["template_fixture", "world_fixture", "world_url_fixture"]  # the policy tests' worlds


def test_100_requests_at_once_against_5_make_exactly_5_children(world: Store) -> None:
    PolicyAdmin(world).set("queen", PolicyChange(allowed=True, max_children=5, rate="1000/h"))
    children = ChildService(world, SpawnPolicyService(world), "h")
    answers: list[Answer] = []
    start = threading.Barrier(100)

    def agent(n: int) -> None:
        start.wait()
        answers.append(children.ask("queen", Ask(f"a{n}", (), None, (), None), actor=f"agent:queen/a{n}"))

    threads = [threading.Thread(target=agent, args=(n,)) for n in range(100)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert Counter(a.rule for a in answers) == {"allow": 5, "max-children": 95}
    made = {a.child for a in answers if a.allowed}
    with world.engine.connect() as conn:
        rows = conn.execute(text("SELECT tenant_id, parent FROM tenants WHERE parent IS NOT NULL")).all()
        bound = conn.execute(text("SELECT child, state FROM spawn_reservations")).all()
        logged = conn.execute(text("SELECT count(*) FROM audit_entries WHERE action = 'policy.decide'")).scalar()
    assert {r[0] for r in rows} == made and len(made) == 5 and {r[1] for r in rows} == {"queen"}
    assert sorted(bound) == sorted((child, "reserved") for child in made)
    assert logged == 100
