import pytest

from colibri.domain import TenantStatus, check_transition, prefix_clash, validate_tenant_id
from colibri.errors import InvalidTenantId, StateConflict


@pytest.mark.parametrize("good", ["demo", "a", "Acme-EU_2", "9lives", "x" * 32])
def test_valid_tenant_ids(good: str) -> None:
    assert validate_tenant_id(good) == good


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ("", "empty"),
        ("x" * 33, "longer than 32"),
        ("x" * 10_000, "longer than 32"),
        ("../x", "use ASCII letters"),
        ("a;rm -rf /", "use ASCII letters"),
        ("$(id)", "use ASCII letters"),
        ("a b", "use ASCII letters"),
        ("-lead", "use ASCII letters"),
        ("_lead", "use ASCII letters"),
        ("demo\n", "use ASCII letters"),
        ("dеmo", "use ASCII letters"),  # Cyrillic е
        ("ｄemo", "use ASCII letters"),  # fullwidth d
        ("a.b", "use ASCII letters"),
        ("123", "all digits"),
        ("ALL", "reserved"),
        ("all", "reserved"),
        ("aLl", "reserved"),
    ],
)
def test_invalid_tenant_ids(bad: str, reason: str) -> None:
    with pytest.raises(InvalidTenantId) as caught:
        validate_tenant_id(bad)
    message = str(caught.value)
    assert reason in message
    assert "\n" not in message
    assert len(message) < 200


def test_prefix_clash_both_ways() -> None:
    assert prefix_clash("agent", ["agent1", "zeta"]) == "agent1"
    assert prefix_clash("agent10", ["agent1"]) == "agent1"
    assert prefix_clash("beta", ["agent1", "alpha"]) is None


def test_state_machine_edges() -> None:
    check_transition("t", TenantStatus.REGISTERED, TenantStatus.SPAWNING)
    check_transition("t", TenantStatus.SPAWNING, TenantStatus.ACTIVE)
    check_transition("t", TenantStatus.FAILED, TenantStatus.SPAWNING)
    with pytest.raises(StateConflict, match="tenant t is registered; it cannot become active"):
        check_transition("t", TenantStatus.REGISTERED, TenantStatus.ACTIVE)
    with pytest.raises(StateConflict):
        check_transition("t", TenantStatus.REMOVED, TenantStatus.ACTIVE)
