"""A host's share of one spawn-agent travels as one spawn_many request (one remote process for
the lot), its steps streamed back per tenant; a host that predates the op gets one spawn per
tenant; the batch's arguments are hostile input there."""

import json
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from colibri.adapters.jail import JailState
from colibri.errors import InvalidInput
from colibri.services.hosts.remote_ops import MAX_BATCH
from colibri.services.lifecycle.remote_host import BATCH_BYTES, _batches
from colibri.services.secrets_render import Rendered
from tests.unit.hosts.conftest import Hive

STEPS = ["jail_created", "jail_started", "secrets_provisioned", "mother_installed", "mother_started"]


def _register(hive: Hive, spread: dict[str, str]) -> None:
    for host in set(spread.values()) - {"testhost"}:
        hive.enrol(host)
    for tenant, host in spread.items():
        assert hive.cli("register-tenant", tenant, "--host", host, "--collection", "")[0] == 0


def test_each_hosts_share_is_one_request_and_every_tenants_steps_come_back(hive: Hive) -> None:
    spread = {"a1": "osa", "a2": "osa", "a3": "osa", "d1": "domedog", "d2": "domedog", "h1": "testhost"}
    _register(hive, spread)
    code, out, err = hive.cli("spawn-agent", *spread, "--json")
    assert code == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    assert events[-1] == {"ok": True, "active": list(spread)}
    for tenant in spread:
        assert [e["step"] for e in events if e.get("tenant") == tenant and e["state"] == "done"] == STEPS, tenant
    for host, count in (("osa", 3), ("domedog", 2)):
        remote = hive.remotes[host]
        assert remote.link.ops_sent() == ["spawn_many"]  # one request for the host's whole share
        assert remote.link.progress >= 2 * len(STEPS) * count  # each step's start and end, streamed
        assert all(remote.fake.info(t).state is JailState.RUNNING for t, h in spread.items() if h == host)
    assert [hive.show(t)["status"] for t in spread] == ["active"] * len(spread)
    assert hive.orchestrator.info("h1").state is JailState.RUNNING


def test_a_host_whose_colibri_predates_the_batch_gets_one_spawn_per_tenant(hive: Hive) -> None:
    _register(hive, {"a1": "osa", "a2": "osa"})
    osa = hive.remotes["osa"]
    osa.link.old_ops = {"spawn_many"}
    code, out, err = hive.cli("spawn-agent", "a1", "a2")
    assert code == 0, err
    assert out.splitlines()[-1] == "active: a1 a2"
    assert sorted(osa.link.ops_sent()) == ["spawn", "spawn", "spawn_many"]
    assert [hive.show(t)["status"] for t in ("a1", "a2")] == ["active"] * 2


def test_a_tenant_of_another_host_in_a_batch_fails_alone(hive: Hive) -> None:
    _register(hive, {"mine": "osa", "theirs": "domedog"})
    answer = hive.remotes["osa"].link.call(
        "spawn_many", {"tenants": [{"tenant": "mine"}, {"tenant": "theirs"}, {"tenant": "ghost"}], "parallelism": 2}
    )
    results = answer["results"]
    assert results["mine"] is None and hive.remotes["osa"].fake.info("mine").state is JailState.RUNNING
    assert results["theirs"]["type"] == "StateConflict" and "lives on host domedog" in results["theirs"]["message"]
    assert results["ghost"]["type"] == "TenantNotFound"
    assert hive.remotes["osa"].fake.info("theirs").state is JailState.ABSENT


def test_a_malformed_batch_is_refused_whole_before_anything_runs(hive: Hive) -> None:
    _register(hive, {"acme": "osa"})
    link = hive.remotes["osa"].link
    one = {"tenant": "acme"}
    for args, message in (
        ({"tenants": "acme"}, "tenants must be a list of 1 to 64"),
        ({"tenants": []}, "tenants must be a list of 1 to 64"),
        ({"tenants": [one] * (MAX_BATCH + 1)}, "tenants must be a list of 1 to 64"),
        ({"tenants": [one, one]}, "a tenant id of its own"),
        ({"tenants": [one], "parallelism": True}, "parallelism must be a whole number"),
        ({"tenants": [one], "parallelism": 65}, "parallelism must be a whole number"),
        ({"tenants": ["acme"]}, "each of tenants must be an object"),
        ({"tenants": [{"tenant": "acme", "path": "/etc"}]}, "unknown argument"),
        ({"tenants": [{"tenant": "../etc"}]}, "invalid tenant"),
        ({"tenants": [{"tenant": "acme", "env": "A=" + "x" * 70_000}]}, "env is more than"),
        ({"tenants": [one], "jail_root": "/"}, "unknown argument"),
    ):
        with pytest.raises(InvalidInput, match=message):
            link.call("spawn_many", args)
    assert hive.remotes["osa"].fake.calls == [] and hive.show("acme")["status"] == "registered"


def test_a_large_share_is_cut_by_count_and_by_bytes_in_order() -> None:
    small = [(f"t{i:03d}", Rendered(f"t{i:03d}", b"A='1'\n", "staged", ("A",))) for i in range(MAX_BATCH + 6)]
    parts = _batches(small)
    assert [len(p) for p in parts] == [MAX_BATCH, 6] and [t for p in parts for t, _ in p] == [t for t, _ in small]
    big = [(f"b{i}", Rendered(f"b{i}", b"K=" + b"\x01" * 60_000 + b"\n", "staged", ("K",))) for i in range(5)]
    parts = _batches(big)
    assert [len(p) for p in parts] == [1] * 5  # each at worst 6 x its bytes as JSON: one per frame
    assert all(sum(6 * len(r.content or b"") + 1024 for _, r in p) <= BATCH_BYTES for p in parts)
    assert _batches([]) == []


class HostileLink:
    """A host that answers spawn_many with whatever it likes: progress of other tenants, of the
    wrong types, too long; results missing, of the wrong type, or of tenants never sent."""

    def __init__(self, answer: dict[str, Any], progress: list[dict[str, Any]]) -> None:
        self.answer, self.items = answer, progress

    def call(
        self,
        op: str,
        args: Mapping[str, Any],
        timeout: float | None = None,
        on_progress: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        assert op == "spawn_many" and on_progress is not None and timeout is not None
        for item in self.items:
            on_progress(item)
        return self.answer


def test_a_hosts_batch_answer_is_a_peers_input() -> None:
    from colibri.errors import RemoteError, TenantNotFound
    from colibri.services.lifecycle.remote_host import RemoteHost

    batch = [(t, Rendered(t, None, None, ())) for t in ("a1", "a2", "a3", "a4")]
    progress = [
        {"tenant": ["a1"], "step": "x", "state": "done", "detail": ""},
        {"tenant": "zz", "step": "jail_created", "state": "done", "detail": ""},
        {"tenant": "a1", "step": 5, "state": "done", "detail": ""},
        {"tenant": "a1", "step": "jail_created", "state": "done", "detail": "\x1b[2J" + "x" * 5000},
    ]
    results = {
        "a1": None,
        "a2": "garbage",
        "a4": {"type": "TenantNotFound", "code": 4, "message": "tenant not found: a4"},
        "zz": None,
    }
    seen: list[tuple[str, str, str, str]] = []
    host = RemoteHost("osa", HostileLink({"results": results}, progress), None, "testhost")  # type: ignore[arg-type]
    got = host.spawn_many(batch, 4, on_step=lambda *step: seen.append(step))
    assert list(got) == ["a1", "a2", "a3", "a4"] and got["a1"] is None
    assert isinstance(got["a2"], RemoteError) and str(got["a2"]) == "host osa answered spawn_many without tenant a2"
    assert isinstance(got["a3"], RemoteError) and isinstance(got["a4"], TenantNotFound)
    assert seen == [("a1", "jail_created", "done", ("\x1b[2J" + "x" * 5000)[:2000])]  # the CLI's printer makes it safe
    host = RemoteHost("osa", HostileLink({"results": ["a1"]}, []), None, "testhost")  # type: ignore[arg-type]
    with pytest.raises(RemoteError, match="answered spawn_many without its results"):
        host.spawn_many(batch, 4)


def test_a_batch_runs_at_most_the_hosts_own_spawn_parallelism(hive: Hive, monkeypatch: pytest.MonkeyPatch) -> None:
    from colibri.services.lifecycle.pipeline import SpawnService

    _register(hive, {"acme": "osa"})
    asked: list[int] = []
    real = SpawnService.spawn_many

    def counted(self: SpawnService, tenant_ids: list[str], parallelism: int, *args: Any, **kw: Any) -> Any:
        asked.append(parallelism)
        return real(self, tenant_ids, parallelism, *args, **kw)

    monkeypatch.setattr(SpawnService, "spawn_many", counted)
    link = hive.remotes["osa"].link
    assert link.call("spawn_many", {"tenants": [{"tenant": "acme"}], "parallelism": 64})["results"] == {"acme": None}
    assert link.call("spawn_many", {"tenants": [{"tenant": "acme"}], "parallelism": 2})["results"] == {"acme": None}
    assert asked == [hive.remotes["osa"].context.settings.spawn_parallelism, 2] and asked[0] == 4
