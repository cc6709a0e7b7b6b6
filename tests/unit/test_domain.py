import pytest

from colibri.domain import (
    TenantStatus,
    check_transition,
    prefix_clash,
    validate_collection_name,
    validate_host_name,
    validate_tenant_id,
)
from colibri.errors import InvalidInput, InvalidTenantId, StateConflict


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


@pytest.mark.parametrize("host", ["osa", "osa.example.org", "h-1", "a" * 63, "1host"])
def test_host_names_accepted(host: str) -> None:
    assert validate_host_name(host) == host


@pytest.mark.parametrize(
    "host", ["", "-osa", "osa-", "osa..org", "os a", "osa\x1b[2J", "a" * 64, ("a" * 60 + ".") * 5, "osa\n", "../x"]
)
def test_host_names_refused(host: str) -> None:
    with pytest.raises(InvalidInput, match="invalid host"):
        validate_host_name(host)


@pytest.mark.parametrize("name", ["acme", "Acme Corp", "acme/prod", "é-ü"])
def test_collection_names_accepted(name: str) -> None:
    assert validate_collection_name(name) == name


@pytest.mark.parametrize("name", ["acme\x1b]0;x\x07", "a\u202eb", "a\nb", "x" * 256])
def test_collection_names_refused(name: str) -> None:
    with pytest.raises(InvalidInput, match="invalid collection"):
        validate_collection_name(name)
