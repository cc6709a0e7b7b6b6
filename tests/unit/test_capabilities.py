"""One capability rule for the CLI's ``--capability NAME[@VERSION]`` and the API's register body
(colibri.domain; docs/openapi.yaml's Name and Capability.version say the same)."""

import pytest

from colibri.domain import capabilities_from_objects, capabilities_from_specs, capability
from colibri.errors import InvalidInput

GOOD = [("echo", "1"), ("Echo", "1"), ("a.b_c-d", "2.0.1"), ("x" * 64, "1.2.3+build.7"), ("9", "0")]
BAD_NAMES = ["", ".hidden", "-x", "..", "../x", "a/b", "x" * 65, "é", "a b", "a:b"]
BAD_VERSIONS = ["", "-1", ".1", "+1", "1 2", "v" * 33, "1/2"]


@pytest.mark.parametrize(("name", "version"), GOOD)
def test_the_cli_and_the_api_accept_the_same(name: str, version: str) -> None:
    assert capabilities_from_specs([f"{name}@{version}"]) == [{"name": name, "version": version}]
    assert capabilities_from_objects([{"name": name, "version": version}]) == [{"name": name, "version": version}]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_the_cli_and_the_api_refuse_the_same_names(name: str) -> None:
    with pytest.raises(InvalidInput, match="invalid capability"):
        capabilities_from_specs([name])
    with pytest.raises(InvalidInput, match="invalid capability name"):
        capabilities_from_objects([{"name": name, "version": "1"}])


@pytest.mark.parametrize("version", BAD_VERSIONS)
def test_the_cli_and_the_api_refuse_the_same_versions(version: str) -> None:
    with pytest.raises(InvalidInput, match="invalid capability"):
        capabilities_from_specs([f"echo@{version}"])
    with pytest.raises(InvalidInput, match="invalid version for capability echo"):
        capabilities_from_objects([{"name": "echo", "version": version}])


def test_defaults_and_repeats_are_each_interfaces_own() -> None:
    """The CLI's version defaults to 1 and a repeated option takes its last value; an agent's
    defaults to 0 and a name it sends twice is refused (as before the two were one rule)."""
    assert capabilities_from_specs(["echo", "sleep@2", "echo@3"]) == [
        {"name": "echo", "version": "3"}, {"name": "sleep", "version": "2"}]  # fmt: skip
    assert capabilities_from_objects([{"name": "echo"}]) == [{"name": "echo", "version": "0"}]
    with pytest.raises(InvalidInput, match="listed twice"):
        capabilities_from_objects([{"name": "echo"}, {"name": "echo", "version": "1"}])
    with pytest.raises(InvalidInput, match="at most 64"):
        capabilities_from_objects([{"name": f"c{i}"} for i in range(65)])
    with pytest.raises(InvalidInput, match="is an object"):
        capabilities_from_objects(["echo"])
    assert capability("echo", "1") == {"name": "echo", "version": "1"}


def test_a_refused_cli_value_is_shown_escaped() -> None:
    with pytest.raises(InvalidInput) as refused:
        capabilities_from_specs(["\x1b[31mred"])
    assert "\x1b" not in str(refused.value) and "\\x1b" in str(refused.value)
