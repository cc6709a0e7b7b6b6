"""Every JailBackend has every member of the protocol: the lifecycle calls them all directly (no
getattr fallback, which once hid that the sandbox had neither ``needs_ip`` nor ``interrupted``)."""

import inspect

import pytest

from colibri.adapters.bastille.backend import Bastille
from colibri.adapters.jail import JailBackend
from colibri.adapters.sandbox.backend import Sandbox
from tests.fakes.jail import FakeJails

MEMBERS = sorted(
    {n for n in vars(JailBackend) if not n.startswith("_")} | set(getattr(JailBackend, "__annotations__", {}))
)


def test_the_protocol_is_what_the_lifecycle_uses() -> None:
    assert {"name", "needs_ip", "interrupted", "create", "start", "stop", "exec", "is_mounted"} <= set(MEMBERS)


@pytest.mark.parametrize("backend", [Bastille, Sandbox, FakeJails], ids=lambda c: c.__name__)
def test_every_backend_has_every_member(backend: type) -> None:
    missing = [m for m in MEMBERS if not hasattr(backend, m)]
    assert missing == []
    for member in MEMBERS:
        wanted = getattr(JailBackend, member, None)
        if inspect.isfunction(wanted):  # the same parameters, by name
            have = inspect.signature(getattr(backend, member)).parameters
            assert list(have) == list(inspect.signature(wanted).parameters), (backend.__name__, member)
    assert isinstance(backend.needs_ip, bool) and isinstance(backend.name, str)
