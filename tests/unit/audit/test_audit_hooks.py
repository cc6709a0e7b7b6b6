"""Every state change writes its audit entry in the same transaction (issue 12, part F).

Fail closed: with the audit table refusing writes (a trigger, on SQLite and on PostgreSQL), the
change does not happen.  The hive's batched claims and results are one append (one head update)
per transaction, each entry naming its own agent.  The catalogue names every action the code
records, and docs/AUDIT_ACTIONS.md is generated from it.
"""

import json
import re
from pathlib import Path

import pytest
from sqlalchemy import text

from colibri.audit import origin
from colibri.audit.actions import ACTIONS, markdown
from colibri.errors import StoreError
from colibri.services.hive.rules import AgentRef, Policy, Scope
from colibri.services.hive.service import HiveService
from colibri.store.db import Store
from tests.conftest import REPO, Invoke
from tests.unit.daemon.hive_world import Clock, active_tenants

ACME = Scope("tenant", "acme")
ECHO = [{"name": "echo", "version": "1"}]


def entries(store: Store, host: str | None = None) -> list[dict[str, object]]:
    """The entries of state changes: without the audit's own (``audit.key_create``, made with this
    host's signing key when a command first signs a checkpoint; tests/unit/audit covers those)."""
    query = "SELECT body FROM audit_entries" + (" WHERE host = :h" if host else "") + " ORDER BY host, seq"
    with store.engine.connect() as conn:
        found = [json.loads(row[0]) for row in conn.execute(text(query), {"h": host})]
    return [e for e in found if not str(e["action"]).startswith("audit.")]


def refuse_audit_writes(store: Store) -> None:
    """A trigger that refuses every new audit entry: the audit table 'cannot be written'."""
    with store.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("CREATE FUNCTION audit_refuses() RETURNS trigger AS $$ BEGIN "
                              "RAISE EXCEPTION 'audit refused'; END $$ LANGUAGE plpgsql"))  # fmt: skip
            conn.execute(text("CREATE TRIGGER audit_refuses BEFORE INSERT ON audit_entries "
                              "FOR EACH ROW EXECUTE FUNCTION audit_refuses()"))  # fmt: skip
        else:
            conn.execute(text("CREATE TRIGGER audit_refuses BEFORE INSERT ON audit_entries "
                              "BEGIN SELECT RAISE(ABORT, 'audit refused'); END"))  # fmt: skip


def test_a_change_whose_entry_cannot_be_written_does_not_happen(
    db_url: str, invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLIBRI_DATABASE_URL", db_url)
    code, _, err = invoke("register-tenant", "acme")
    assert code == 0, err
    store = Store(db_url)
    try:
        assert [e["action"] for e in entries(store)] == ["tenant.register"]
        refuse_audit_writes(store)
        code, _, err = invoke("register-tenant", "zed")
        assert code == StoreError.exit_code, err
        assert "Traceback" not in err
        code, _, err = invoke("remove-tenant", "acme")
        assert code == StoreError.exit_code, err
        with store.engine.connect() as conn:
            rows = dict(conn.execute(text("SELECT tenant_id, status FROM tenants")).all())  # type: ignore[arg-type]
        assert rows == {"acme": "registered"}  # zed never registered, acme never removed
        hive = HiveService(store, Policy(), clock=Clock())
        with pytest.raises(StoreError):
            hive.submit(Scope("admin"), "echo", {"n": 1})
        assert hive.tasks() == []  # the task was never queued
        assert [e["action"] for e in entries(store)] == ["tenant.register"]
    finally:
        store.close()


def test_tenant_commands_record_who_did_what(invoke: Invoke) -> None:
    assert invoke("register-tenant", "acme")[0] == 0
    assert invoke("register-tenant", "acme")[0] == 0  # the same again: no change, no entry
    assert invoke("remove-tenant", "acme")[0] == 0
    from colibri.settings import load_settings

    store = Store(load_settings(None)[0].database)
    try:
        found = entries(store)
    finally:
        store.close()
    assert [(e["action"], e["subject"], e["outcome"], e["host"]) for e in found] == [
        ("tenant.register", "tenant:acme", "ok", "testhost"),
        ("tenant.remove", "tenant:acme", "ok", "testhost"),
    ]
    assert {e["actor"] for e in found} == {origin.operator_actor()}
    assert found[1]["detail"] == {"status": ["registered", "removed"], "set": {}}
    assert found[1]["seq"] > found[0]["seq"] and found[1]["prev"] != found[0]["prev"]


def test_the_hive_records_each_agent_and_task_change_with_its_agent(db_url: str) -> None:
    store = active_tenants(db_url, {"acme": "osa"})
    clock = Clock()
    store.clock = clock  # leases are on the database's clock (R3)
    try:
        hive = HiveService(store, Policy(lease_seconds=60, max_attempts=2), clock=clock)
        with origin.acting("daemon", host="osa"):
            before = len(entries(store, "osa"))
            hive.register(ACME, "a1", ECHO, "1")
            hive.register(ACME, "a2", ECHO, "1")
            with origin.acting("tenant:acme"):
                ids = [hive.submit(ACME, "echo", {"token": f"s3cr3t-{n}"})["id"] for n in range(3)]
            refs = [AgentRef(f"acme/{a}", "acme", None, frozenset({"echo"})) for a in ("a1", "a2")]
            claims = hive.claim_many(refs)
            assert all(c is not None for c in claims)
            hive.flush_heartbeats([("acme/a1", clock.now)])
            done = [(ACME, "acme/a1", claims[0]["id"], claims[0]["lease"], True, {"ok": 1}, None, 0, None),  # type: ignore[index]
                    (ACME, "acme/a2", claims[1]["id"], claims[1]["lease"], False, None, "boom", 3, None)]  # type: ignore[index]  # fmt: skip
            answers = hive.finish_many(done)
            assert [a["state"] for a in answers] == ["succeeded", "failed"]  # type: ignore[index]
            hive.finish_many(done[:1])  # a repeated report changes nothing: no entry
            hive.mark_lost("acme/a2")
            hive.deregister("acme/a1")
            clock.now += 61
        found = entries(store, "osa")[before:]
    finally:
        store.close()
    got = [(e["action"], e["subject"], e["actor"], e["outcome"]) for e in found]
    assert got == [
        ("agent.register", "agent:acme/a1", "agent:acme/a1", "ok"),
        ("agent.register", "agent:acme/a2", "agent:acme/a2", "ok"),
        ("task.submit", f"task:{ids[0]}", "tenant:acme", "ok"),
        ("task.submit", f"task:{ids[1]}", "tenant:acme", "ok"),
        ("task.submit", f"task:{ids[2]}", "tenant:acme", "ok"),
        ("task.claim", f"task:{ids[0]}", "agent:acme/a1", "ok"),
        ("task.claim", f"task:{ids[1]}", "agent:acme/a2", "ok"),
        ("task.complete", f"task:{ids[0]}", "agent:acme/a1", "ok"),
        ("task.fail", f"task:{ids[1]}", "agent:acme/a2", "failed"),
        ("agent.lost", "agent:acme/a2", "daemon", "ok"),
        ("agent.leave", "agent:acme/a1", "agent:acme/a1", "ok"),
    ]
    claimed = [e for e in found if e["action"] == "task.claim"]
    assert claimed[0]["ts"] == claimed[1]["ts"]  # one append for the turn's claims
    assert all(e["tenant"] == "acme" for e in found)
    assert "s3cr3t" not in json.dumps(found)  # sizes, never a payload or a result
    assert "boom" not in json.dumps(found)


def test_a_requeue_and_a_give_up_are_recorded(db_url: str) -> None:
    store = active_tenants(db_url, {"acme": "osa"})
    clock = Clock()
    store.clock = clock  # leases are on the database's clock (R3)
    try:
        hive = HiveService(store, Policy(lease_seconds=60, max_attempts=1), clock=clock)
        with origin.acting("daemon", host="osa"):
            hive.register(ACME, "a1", ECHO, "1")
            task = hive.submit(ACME, "echo", 1)
            assert hive.claim(AgentRef("acme/a1", "acme", None, frozenset({"echo"}))) is not None
            clock.now += 61
            hive.expire_leases()
        last = entries(store, "osa")[-1]
    finally:
        store.close()
    assert (last["action"], last["subject"], last["outcome"]) == ("task.fail", f"task:{task['id']}", "failed")
    assert last["detail"]["agent"] == "acme/a1" and "lease expired" in str(last["detail"]["reason"])  # type: ignore[index]


ACTION_LITERAL = re.compile(
    r'(?:audit=|audit: str = |(?:audit_)?record\(\s*(?:self\._)?session,\s*|event\(\s*|Event\(\s*)"([a-z_.]+)"'
)
CHOSEN = re.compile(r'"([a-z]+\.[a-z_]+)" if [^\n]* else "([a-z]+\.[a-z_]+)"')


def test_every_action_the_code_records_is_in_the_catalogue() -> None:
    used: set[str] = set()
    for path in (REPO / "colibri").rglob("*.py"):
        source = path.read_text()
        for found in ACTION_LITERAL.findall(source) + CHOSEN.findall(source):
            used.update(name for name in (found if isinstance(found, tuple) else (found,)) if name)
    from colibri.services.hive.agents import _STATE_ACTIONS

    used.update(_STATE_ACTIONS.values())
    remote = (REPO / "colibri/services/lifecycle/remote_host.py").read_text()
    used.update(f"remote.{op}" for op in re.findall(r'self\._call\("([a-z_]+)"', remote))
    assert len(used) > 30, used  # the pattern still finds the code's calls
    assert sorted(used - set(ACTIONS)) == []
    assert sorted(set(ACTIONS) - used) == []  # nothing catalogued that is never recorded


def test_the_actions_doc_is_generated_from_the_catalogue() -> None:
    doc = Path(REPO / "docs/AUDIT_ACTIONS.md").read_text()
    assert doc == markdown(), "regenerate: python -m colibri.audit.actions > docs/AUDIT_ACTIONS.md"


def test_what_a_peer_sent_shortens_an_entry_and_never_fails_the_change(db_url: str) -> None:
    from sqlmodel import Session

    from colibri.store.audit_hooks import record

    store = Store(db_url)
    try:
        with origin.acting("tenant:acme", host="osa"), Session(store.engine) as session:
            record(session, "secrets.provision", "tenant:acme", keys=[f"K{n:03d}" + "x" * 60 for n in range(64)],
                   error="bad \ud800 text \x00 " + "é" * 5000)  # fmt: skip
            record(session, "tenant.change", "tenant:acme", fields={f"f{n}": "y" * 300 for n in range(30)})
            session.commit()
        cut, names = entries(store, "osa")
    finally:
        store.close()
    assert len(cut["detail"]["keys"]) == 32  # type: ignore[arg-type,index]
    assert len(cut["detail"]["error"]) == 200 + 5  # type: ignore[arg-type,index]  # 200 characters, one escaped
    assert str(cut["detail"]["error"]).startswith("bad \\ud800 text \x00 ")  # type: ignore[index]
    assert names["detail"] == {"truncated": True, "fields": [f"f{n}" for n in range(30)]}


class _ProvingVault:
    """The Bitwarden adapter at its seam: a login that proves the credentials (no bw, no server)."""

    def login(self, credentials: object) -> object:
        from types import SimpleNamespace

        return SimpleNamespace(collections=[SimpleNamespace(name="acme")])


def test_vault_login_records_where_never_what_and_fails_closed(db_url: str, tmp_path: Path) -> None:
    from pydantic import SecretStr

    from colibri.adapters.credentials import CredentialStore, OperatorCredentials
    from colibri.services.secrets_vault import VaultService

    store = Store(db_url)
    folder = tmp_path / "credentials"
    folder.mkdir(mode=0o700)
    creds = OperatorCredentials(SecretStr("user.id-7"), SecretStr("s3cr3t-client"), SecretStr("s3cr3t-master"))
    try:
        vault = VaultService(_ProvingVault(), CredentialStore(folder), "https://Vault.Example.org/", "org",  # type: ignore[arg-type]
                             store=lambda: store)  # fmt: skip
        with origin.acting("operator:uid=0", host="osa"):
            assert vault.login(creds, "files")["collections"] == ["acme"]
            (entry,) = entries(store, "osa")
            assert (entry["action"], entry["subject"], entry["detail"]) == (
                "vault.login", "vault:https://vault.example.org", {"stored_in": "files"},
            )  # fmt: skip
            assert "s3cr3t" not in json.dumps(entry) and "user.id-7" not in json.dumps(entry)
            saved = list(folder.iterdir())
            assert saved  # the first login stored them
            for path in saved:
                path.unlink()
            refuse_audit_writes(store)
            with pytest.raises(StoreError):
                vault.login(creds, "files")
        assert list(folder.iterdir()) == []  # no entry, no stored credentials
    finally:
        store.close()


def test_gone_agents_pruned_past_the_cap_are_recorded(db_url: str) -> None:
    store = active_tenants(db_url, {"acme": "osa"})
    try:
        hive = HiveService(store, Policy(max_agents=1), clock=Clock())
        with origin.acting("daemon", host="osa"):
            for agent in ("a1", "a2", "a3"):
                hive.register(ACME, agent, ECHO, "1")
                hive.deregister(f"acme/{agent}")
        pruned = [e for e in entries(store, "osa") if e["action"] == "agent.prune"]
        kept = {a["key"] for a in hive.agents()}
    finally:
        store.close()
    (entry,) = pruned  # a1 and a2 left within one second: either is the older one
    (gone,) = entry["detail"]["agents"]  # type: ignore[index]
    assert entry["subject"] == "tenant:acme" and gone in ("acme/a1", "acme/a2") and gone not in kept


def test_a_detail_is_cut_to_names_exactly_when_its_encoding_would_pass_the_limit() -> None:
    """``bounded`` keeps a detail whose JSON fits (control characters escape to six bytes,
    characters beyond the BMP take four) and cuts one over the limit to its names."""
    import random

    from colibri.audit.entry import MAX_DETAIL_BYTES
    from colibri.store.audit_hooks import bounded, shown

    rng = random.Random(12)
    alphabet = ["a", "\x00", "\x1f", '"', "\\", "é", "\u2028", "\U0001f600", "\ud800"]
    limit = MAX_DETAIL_BYTES - 512
    kept = cut = 0
    for _ in range(3000):
        detail = {}
        for n in range(rng.randint(0, 14)):
            kind = rng.random()
            if kind < 0.6:
                value: object = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 220)))
            elif kind < 0.8:
                value = rng.choice([None, True, False, 0, -(2**60), 2**53 - 1])
            else:
                value = [rng.choice(alphabet) * rng.randint(0, 150) for _ in range(rng.randint(0, 5))]
            detail["k" * rng.randint(1, 40) + str(n)] = shown(value)
        found = bounded(detail)
        size = len(json.dumps(detail, ensure_ascii=False).encode("utf-8", "surrogatepass"))
        if size <= limit:
            assert found is detail
            kept += 1
        else:
            assert found == {"truncated": True, "fields": list(detail)[:32]}
            cut += 1
    assert kept > 500 and cut > 500  # both sides of the limit were reached
