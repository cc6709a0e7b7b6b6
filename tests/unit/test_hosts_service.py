"""``colibri hosts`` below the CLI: enrolment's validation, liveness, remove, and check's
judgement of what a remote said (the SSH adapter faked at its seam; the real one: test_hosts_ssh)."""

from pathlib import Path
from typing import Any

import pytest

from colibri import __version__
from colibri.errors import Conflict, HostIncompatible, HostNotFound, InvalidInput, RemoteError
from colibri.services.hosts.enrol import HostService
from colibri.services.hosts.reach import liveness, parse_ssh, target_of, validate_host_id
from colibri.services.tenants import TenantService
from colibri.store.db import Store
from colibri.store.models import Host

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ4jS2T5Jm3cD3XqoP2i8VnR8nJb3TPO6lS0bYl5Y7+y"


class FakeSsh:
    def __init__(self, answer: dict[str, Any] | Exception) -> None:
        self.answer = answer
        self.calls: list[tuple[Any, list[str]]] = []

    def run_json(self, target: Any, argv: list[str]) -> dict[str, Any]:
        self.calls.append((target, argv))
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


@pytest.fixture(name="store")
def store_fixture(tmp_path: Path) -> Store:
    return Store(f"sqlite:///{tmp_path / 'c.db'}")


def _service(store: Store, ssh: FakeSsh | None = None, now: float = 1000.0) -> HostService:
    return HostService(store, (lambda: ssh) if ssh else None, clock=lambda: now)  # type: ignore[arg-type,return-value]


@pytest.mark.parametrize(
    ("spec", "want"),
    [("root@10.0.0.2", ("root", "10.0.0.2", 22)),
     ("colibri@osa.example.org:2222", ("colibri", "osa.example.org", 2222)),
     ("root@[fe80::1]:22", ("root", "fe80::1", 22))],
)  # fmt: skip
def test_parse_ssh(spec: str, want: tuple[str, str, int]) -> None:
    assert parse_ssh(spec) == want


@pytest.mark.parametrize(
    "spec",
    ["10.0.0.2", "root@", "root@10.0.0.2:0", "root@10.0.0.2:70000", "Root Evil@h", "root@fe80::1", "root@-oProxy=x",
     "root@h;rm", "root@123", "root@[osa]:22"],
)  # fmt: skip
def test_parse_ssh_refuses(spec: str) -> None:
    with pytest.raises(InvalidInput):
        parse_ssh(spec)


@pytest.mark.parametrize("name", ["", "a_b", "osa.example", "-x", "x" * 64, "é", "a b"])
def test_host_names(name: str) -> None:
    with pytest.raises(InvalidInput):
        validate_host_id(name)
    assert validate_host_id("osa-2") == "osa-2"


def test_add_is_idempotent_and_conflicts_on_other_fields(store: Store) -> None:
    hosts = _service(store)
    view = hosts.add("osa", "root@10.0.0.2", [KEY + " root@osa"], "/usr/local/bin/colibri")
    assert view["ssh"] == "root@10.0.0.2" and view["host_keys"][0]["type"] == "ssh-ed25519"
    assert hosts.add("osa", "root@10.0.0.2", [KEY], "/usr/local/bin/colibri") == view  # the comment is not pinned
    with pytest.raises(Conflict, match="other fields"):
        hosts.add("osa", "root@10.0.0.3", [KEY], "/usr/local/bin/colibri")
    with pytest.raises(InvalidInput, match="no host key"):
        hosts.add("b", "root@10.0.0.3", [], None)
    with pytest.raises(InvalidInput, match="--command"):
        hosts.add("b", "root@10.0.0.3", [KEY], "colibri; rm -rf /")


def test_add_from_a_known_hosts_file(store: Store, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text(f"[10.0.0.4]:2222 {KEY}\n10.0.0.5 {KEY}\n")
    view = _service(store).add("c", "root@10.0.0.4:2222", [], None, known)
    assert len(view["host_keys"]) == 1 and view["ssh"] == "root@10.0.0.4:2222"
    with pytest.raises(InvalidInput, match=r"no key for 10\.0\.0\.9"):
        _service(store).add("d", "root@10.0.0.9", [], None, known)
    with pytest.raises(InvalidInput, match="not a regular file"):
        _service(store).add("d", "root@10.0.0.9", [], None, tmp_path)


def test_liveness_from_the_lease() -> None:
    host = Host(name="h")
    assert liveness(host, 100.0) == "unknown"
    host.lease_expires_at = 100.0
    assert [liveness(host, now, grace=30) for now in (99.0, 100.0, 129.0, 131.0)] == ["up", "up", "stale", "lost"]


def test_remove_refused_while_tenants_live_there(store: Store) -> None:
    hosts = _service(store)
    hosts.add("osa", "root@10.0.0.2", [KEY], None)
    tenants = TenantService(store, "orchestrator")
    tenants.register("t1", None, "osa")
    with pytest.raises(Conflict, match="still has 1 tenant"):
        hosts.remove("osa")
    tenants.remove("t1")  # a removed tenant's row does not hold the host
    assert hosts.remove("osa")["name"] == "osa"
    with pytest.raises(HostNotFound):
        hosts.show("osa")


def _found(**changes: Any) -> dict[str, Any]:
    base = {"version": __version__, "python": "3.11.7", "host": "osa", "backend": "sandbox",
            "programs": {"bwrap": "/usr/bin/bwrap"}, "missing": [], "backend_ready": True}  # fmt: skip
    return {**base, **changes}


@pytest.mark.parametrize(
    ("found", "error"),
    [(_found(), None), (_found(version="99.0.0"), "another major version"), (_found(version=None), "did not say"),
     (_found(backend="bastille", backend_ready=False, missing=["bastille"]), "programs are missing there: bastille"),
     (_found(host="domedog"), "calls itself 'domedog'"),
     (RemoteError("host osa did not answer within 1 s"), "did not answer")],
)  # fmt: skip
def test_check_records_what_it_found(store: Store, found: Any, error: str | None) -> None:
    ssh = FakeSsh(found)
    hosts = _service(store, ssh)
    hosts.add("osa", "root@10.0.0.2", [KEY], None)
    report = hosts.check("osa")
    assert ssh.calls[0][1] == ["version", "--json"] and ssh.calls[0][0] == target_of(_row(store, "osa"))
    if error is None:
        assert report.error is None and report.host["last_error"] is None
    else:
        assert report.error is not None and error in report.error.message
        assert report.host["last_error"] == report.error.message
        if not isinstance(found, Exception):
            assert isinstance(report.error, HostIncompatible) and report.error.exit_code == 20
    assert report.host["checked_at"] is not None
    assert hosts.show("osa")["last_error"] == report.host["last_error"]


def _row(store: Store, name: str) -> Host:
    from colibri.store.hosts import HostRepo

    with store.session() as session:
        host = HostRepo(session).get(name)
        assert host is not None
        return host


def test_check_reaches_the_records_pin_and_settles_what_is_owed_there(store: Store, tmp_path: Path) -> None:
    """The orchestrator's record is the pin (review R1): a forged shared row is never connected
    to, the check fails with 19; a host that answers as itself gets its owed stale copies
    destroyed (review R15)."""
    from colibri.store.hosts import HostRepo
    from colibri.store.orchestrator import OrchestratorRecord

    ssh = FakeSsh(_found())
    settled: list[str] = []

    def settle(host: str) -> list[str]:
        settled.append(host)
        return ["acme"]

    record = OrchestratorRecord(tmp_path / "state", "orchestrator")
    hosts = HostService(store, lambda: ssh, clock=lambda: 1000.0, record=record, settle=settle)  # type: ignore[arg-type,return-value]
    hosts.add("osa", "root@10.0.0.2", [KEY], None)
    report = hosts.check("osa")
    assert report.error is None and settled == ["osa"] and report.host["stale_copies_destroyed"] == ["acme"]
    assert report.host["pinned"] is True and report.host["diverged"] is None
    with store.session() as session:
        row = HostRepo(session).get("osa")
        assert row is not None
        row.address = "192.0.2.66"  # another host, with its database credentials
    report = hosts.check("osa")
    assert ssh.calls[-1][0].address == "10.0.0.2"  # the record's pin, never the forged row
    assert report.error is not None and report.error.exit_code == 19 and "address of host osa" in report.error.message
    assert settled == ["osa"]  # nothing settled while the shared row disagrees
    with pytest.raises(Conflict):  # and the pin is not changed by enrolling the forged fields
        hosts.add("osa", "root@192.0.2.66", [KEY], None)
