"""Hostile review of issues 11 and 12 (review 12): each test fails on the code it was written against."""

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from colibri.adapters import envfile
from colibri.adapters.audit_keys import KeyDir
from colibri.audit import merkle, note, origin
from colibri.audit.entry import GENESIS, Event, body, leaf_hash
from colibri.audit.verify import verify
from colibri.errors import AuditError
from colibri.services.audit.signer import AuditSigner
from colibri.services.secrets_write import env_key_names
from colibri.store.audit import AuditRepo
from colibri.store.db import Store

SIGNED = "2026-12-01T18:00:01.000000Z"


def _key(host: str) -> tuple[Ed25519PrivateKey, note.PublicKey]:
    private = Ed25519PrivateKey.generate()
    raw = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return private, note.PublicKey(note.key_name(host), raw)


def _entries(host: str, count: int) -> list[bytes]:
    found, prev = [], GENESIS
    for seq in range(1, count + 1):
        event = Event("tenant.register", f"tenant:t{seq}", tenant=f"t{seq}")
        encoded = body(seq, "2026-12-01T18:00:00.000000Z", host, "operator:uid=0", event, prev)
        prev = leaf_hash(encoded)
        found.append(encoded)
    return found


def _line(record: dict[str, Any]) -> str:
    return json.dumps(record, separators=(",", ":"))


def _bundle(
    path: Path,
    host: str,
    private: Ed25519PrivateKey,
    public: note.PublicKey,
    lines: list[bytes],
    keys: list[dict[str, Any]] | None = None,
    export_host: str | None = None,
    cosignatures: list[dict[str, Any]] | None = None,
) -> None:
    """A bundle of ``host``'s ``lines``, one checkpoint over all of them, signed by ``public``."""
    root = merkle.root([merkle.leaf(line) for line in lines])
    checkpoint = note.sign(note.Checkpoint(host, len(lines), root, SIGNED), public, private.sign)
    exporter = export_host or host
    heads = {host: (len(lines), root.hex())}
    signature = private.sign(note.export_message(host, SIGNED, heads)) if export_host is None else b"x" * 64
    records = [{"t": "bundle", "format": "colibri-audit", "version": 1, "host": exporter, "time": SIGNED}]
    records += keys or [{"t": "key", "host": host, "key": public.vkey}]
    records.append({"t": "checkpoint", "note": checkpoint})
    records += cosignatures or []
    text = [_line(r) for r in records] + [line.decode() for line in lines]
    export = {"t": "export", "host": exporter, "time": SIGNED, "heads": {h: list(v) for h, v in heads.items()}}
    export |= {"key_id": public.key_id, "signature": base64.b64encode(signature).decode()}
    text.append(_line(export))
    path.write_text("\n".join(text) + "\n")


def _endorsed(by_private: Ed25519PrivateKey, by: note.PublicKey, new: note.PublicKey, when: str) -> dict[str, Any]:
    signature = base64.b64encode(by_private.sign(note.endorse_message(new, when))).decode()
    return {
        "t": "key",
        "host": new.host,
        "key": new.vkey,
        "endorsement": {"by": by.key_id, "time": when, "signature": signature},
    }


def test_the_bundle_builder_makes_a_bundle_that_verifies(tmp_path: Path) -> None:
    private, public = _key("osa")
    _bundle(tmp_path / "b.jsonl", "osa", private, public, _entries("osa", 5))
    assert verify(tmp_path / "b.jsonl", [public]).hosts["osa"].entries == 5


def test_v1_a_multiline_secret_value_is_not_named_as_a_key_in_the_audit_entry() -> None:
    pem_tail = "c2VjcmV0LXByaXZhdGUta2V5LW1hdGVyaWFsLXRoYXQtbXVzdC1uZXZlci1sZWFr"
    value = f"-----BEGIN PRIVATE KEY-----\n{pem_tail}==\n-----END PRIVATE KEY-----"
    content = envfile.render([envfile.Entry("TLS_KEY", value, "item 'tls' custom field 1")], "secrets of t")
    names = env_key_names(content)  # what EnvWriter.provision puts in the entry's detail "keys"
    assert names == ["TLS_KEY"], names


def test_v2_a_key_endorsing_two_successors_is_a_forked_key_chain(tmp_path: Path) -> None:
    old_private, old = _key("osa")
    _, current = _key("osa")  # the real rotation: both keys held out of band by the verifier
    forged_private, forged = _key("osa")  # the attacker's, endorsed with the leaked old key, backdated
    keys = [
        {"t": "key", "host": "osa", "key": old.vkey, "retired_at": "2026-12-01T12:00:00.000000Z"},
        _endorsed(old_private, old, forged, "2026-12-01T11:00:00.000000Z"),
        _endorsed(old_private, old, current, "2026-12-01T12:00:00.000000Z"),
    ]
    _bundle(tmp_path / "forged.jsonl", "osa", forged_private, forged, _entries("osa", 5), keys=keys)
    with pytest.raises(AuditError):
        verify(tmp_path / "forged.jsonl", [old, current])


def test_v3_an_entry_written_into_a_hosts_log_by_another_host_is_not_signed_as_its_own(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    store = Store(url)
    try:
        osa = AuditSigner(store, KeyDir(tmp_path / "osa" / "audit", "osa"), "osa")
        with origin.acting("daemon", host="osa", vouch=osa.keys.entry_key), store.session() as session:
            AuditRepo(session).append(Event("tenant.register", "tenant:acme", tenant="acme"))  # osa's own
        with origin.acting("daemon", host="osa"):
            assert osa.checkpoint() is not None
        # host domedog, compromised: its own colibri on the shared store, recording under osa's name
        with origin.acting("operator:uid=0", host="osa"), store.session() as session:
            AuditRepo(session).append(Event("agent.destroy", "tenant:acme", tenant="acme"))
        with origin.acting("daemon", host="osa"), pytest.raises(AuditError):
            osa.checkpoint()  # signs the forged "osa destroyed acme" as osa's own history
    finally:
        store.close()


def test_v4_a_malformed_export_host_is_a_verify_failure_not_an_internal_error(tmp_path: Path) -> None:
    private, public = _key("osa")
    _bundle(tmp_path / "b.jsonl", "osa", private, public, _entries("osa", 3), export_host="../x")
    with pytest.raises(AuditError):
        verify(tmp_path / "b.jsonl", [public])


def test_v5_secrets_are_not_delivered_when_their_audit_entry_cannot_be_written(tmp_path: Path) -> None:
    from sqlalchemy import text

    from colibri.errors import StoreError
    from colibri.services.secrets_write import EnvTarget, EnvWriter
    from colibri.store.models import Tenant

    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    home = tmp_path / "homes" / "acme"
    home.mkdir(parents=True)
    try:
        with store.session() as session:
            session.add(Tenant(tenant_id="acme", jail_name="acme", host="osa", status="running",
                               backend="local", jail_root=str(home)))  # fmt: skip
        with store.engine.begin() as conn:  # the audit table refuses every write
            conn.execute(text("CREATE TRIGGER audit_refuses BEFORE INSERT ON audit_entries "
                              "BEGIN SELECT RAISE(ABORT, 'audit refused'); END"))  # fmt: skip
        writer = EnvWriter(store, "root", (tmp_path / "homes",))
        with pytest.raises(StoreError):
            writer.deliver(EnvTarget("acme", "local", str(home)), b"TOKEN='s3cr3t'\n")
        assert not (home / ".env").exists()  # no entry, no change: the secret never reached the jail
    finally:
        store.close()


def test_v6_a_deeply_nested_record_is_a_verify_failure_not_an_internal_error(tmp_path: Path) -> None:
    _, public = _key("osa")
    header = '{"t":"bundle","format":"colibri-audit","version":1,"x":' + "[" * 30000 + "]" * 30000 + "}"
    (tmp_path / "b.jsonl").write_text(header + "\n")
    with pytest.raises(AuditError):
        verify(tmp_path / "b.jsonl", [public])


def _cosignature(
    private: Ed25519PrivateKey, key: note.PublicKey, host: str, lines: list[bytes], when: str
) -> dict[str, Any]:
    """``key``'s host's cosignature of ``host``'s tree of ``lines``, signed at ``when``."""
    root = merkle.root([merkle.leaf(line) for line in lines])
    signature = private.sign(note.cosign_message(note.Checkpoint(host, len(lines), root, SIGNED), when))
    return {"t": "cosignature", "host": host, "size": len(lines), "root": base64.b64encode(root).decode(),
            "witness": key.host, "key_id": key.key_id, "time": when,
            "signature": base64.b64encode(signature).decode()}  # fmt: skip


def test_v7_a_cosignature_by_a_retired_key_after_its_retirement_is_refused(tmp_path: Path) -> None:
    private, public = _key("osa")
    old_private, old = _key("domedog")
    _, new = _key("domedog")
    retired = "2026-12-01T12:00:00.000000Z"
    lines = _entries("osa", 4)
    keys = [{"t": "key", "host": "osa", "key": public.vkey},
            {"t": "key", "host": "domedog", "key": old.vkey, "retired_at": retired},
            _endorsed(old_private, old, new, retired)]  # fmt: skip
    late = _cosignature(old_private, old, "osa", lines, "2026-12-01T18:30:00.000000Z")  # the leaked old key
    _bundle(tmp_path / "b.jsonl", "osa", private, public, lines, keys=keys, cosignatures=[late])
    with pytest.raises(AuditError, match="retired"):
        verify(tmp_path / "b.jsonl", [public, old])


def test_v8_a_host_cannot_witness_its_own_tree(tmp_path: Path) -> None:
    private, public = _key("osa")
    lines = _entries("osa", 4)
    own = _cosignature(private, public, "osa", lines, "2026-12-01T18:00:02.000000Z")
    _bundle(tmp_path / "b.jsonl", "osa", private, public, lines, cosignatures=[own])
    with pytest.raises(AuditError):
        verify(tmp_path / "b.jsonl", [public])  # else: "cosigned up to 4 by osa" (witnessed by nobody else)


def test_v9_a_checkpoint_row_the_host_never_signed_does_not_stop_it_signing(tmp_path: Path) -> None:
    from colibri.store.audit_trail import AuditCheckpoint, TrailRepo

    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        osa = AuditSigner(store, KeyDir(tmp_path / "osa" / "audit", "osa"), "osa")
        with origin.acting("daemon", host="osa", vouch=osa.keys.entry_key):
            with store.session() as session:
                AuditRepo(session).append(Event("tenant.register", "tenant:acme", tenant="acme"))
            assert osa.checkpoint() is not None
            with store.session() as session:  # domedog's credentials: a junk row under osa's name
                TrailRepo(session).add_checkpoint(
                    AuditCheckpoint(
                        host="osa",
                        size=10**6,
                        root="00" * 32,
                        key_id="00000000",
                        note="junk",
                        signed_at="2026-12-01T18:00:00.000000Z",
                    )
                )
            for n in range(3):  # osa goes on changing state ...
                with store.session() as session:
                    AuditRepo(session).append(Event("tenant.register", f"tenant:t{n}", tenant=f"t{n}"))
            signed = osa.checkpoint()  # ... and must still sign it (else it stays unsigned, deletable unseen)
        assert signed is not None and signed.size == osa.head()
    finally:
        store.close()


def test_v10_a_task_given_back_from_a_claim_batch_is_not_recorded_as_another_tenants_act(tmp_path: Path) -> None:
    import asyncio

    from sqlalchemy import text

    from colibri.daemon.dispatcher import Dispatcher
    from colibri.daemon.liveness import Registry
    from colibri.daemon.metrics import Metrics
    from colibri.services.hive.rules import AgentRef, Policy, Scope
    from colibri.services.hive.service import HiveService
    from tests.unit.daemon.hive_world import active_tenants

    policy = Policy(lease_seconds=300, max_attempts=3)
    store = active_tenants(f"sqlite:///{tmp_path / 'hive.db'}", {"acme": "h", "zed": "h"})
    try:
        with origin.acting("daemon", host="h"):
            hive = HiveService(store, policy, host="h")
            hive.hosts.start()
            hive.register(Scope("tenant", "acme"), "a1", [{"name": "echo", "version": "1"}], "1")
            hive.register(Scope("tenant", "zed"), "z1", [{"name": "echo", "version": "1"}], "1")
            task = hive.submit(Scope("tenant", "zed"), "echo", {"n": 1})
        registry = Registry(policy)
        for agent in hive.load_agents():
            registry.upsert(agent)

        async def db(fn: Any, *args: Any) -> Any:
            await asyncio.sleep(0)
            return fn(*args)

        dispatcher = Dispatcher(registry, Metrics(), db, lambda: hive, lambda: False)

        async def race() -> None:
            with origin.acting("tenant:acme", host="h"):  # acme's claim starts the batch
                acme = asyncio.ensure_future(dispatcher._claim(AgentRef("acme/a1", "acme", None, frozenset({"echo"}))))
            with origin.acting("tenant:zed", host="h"):  # zed's joins it, then its client goes
                zed = asyncio.ensure_future(dispatcher._claim(AgentRef("zed/z1", "zed", None, frozenset({"echo"}))))
            await asyncio.sleep(0)
            zed.cancel()
            assert await acme is None
            for _ in range(20):
                await asyncio.sleep(0.01)

        asyncio.run(race())
        with store.engine.connect() as conn:
            bodies = [json.loads(b) for (b,) in conn.execute(text("SELECT body FROM audit_entries ORDER BY seq"))]
    finally:
        store.close()
    given_back = [e for e in bodies if e["action"] == "task.requeue" and e["subject"] == f"task:{task['id']}"]
    assert given_back, [e["action"] for e in bodies]
    assert given_back[0]["actor"] != "tenant:acme", given_back[0]


def test_v11_the_export_time_verify_reports_is_the_signed_one(tmp_path: Path) -> None:
    private, public = _key("osa")
    path = tmp_path / "b.jsonl"
    _bundle(path, "osa", private, public, _entries("osa", 3))
    lines = path.read_text().split("\n")
    header = json.loads(lines[0])
    header["time"] = "2027-06-01T00:00:00.000000Z\n  osa: 9999 entries, cosigned up to 9999 by domedog"
    lines[0] = _line(header)
    path.write_text("\n".join(lines))
    try:
        report = verify(path, [public])
    except AuditError:
        return  # refusing an edited header is as good
    assert report.exported_at == SIGNED, report.exported_at  # an old bundle made to look fresh


def test_v12_a_move_records_the_tasks_it_requeues_and_the_agents_it_retires(tmp_path: Path) -> None:
    from sqlalchemy import text

    from colibri.services.hive.moves import leave_old_host
    from colibri.services.hive.rules import AgentRef, Policy, Scope
    from colibri.services.hive.service import HiveService
    from tests.unit.daemon.hive_world import active_tenants

    store = active_tenants(f"sqlite:///{tmp_path / 'hive.db'}", {"acme": "h"})
    try:
        with origin.acting("operator:uid=0", host="h"):
            hive = HiveService(store, Policy(lease_seconds=300, max_attempts=3), host="h")
            hive.hosts.start()
            hive.register(Scope("tenant", "acme"), "a1", [{"name": "echo", "version": "1"}], "1")
            task = hive.submit(Scope("tenant", "acme"), "echo", {"n": 1})
            assert hive.claim(AgentRef("acme/a1", "acme", None, frozenset({"echo"}))) is not None
            with store.session() as session:  # the move's own transaction (placement.rehome)
                assert leave_old_host(session, "acme", "domedog") == [task["id"]]
        with store.engine.connect() as conn:
            rows = conn.execute(text("SELECT body FROM audit_entries ORDER BY seq")).all()
    finally:
        store.close()
    after = [json.loads(b) for (b,) in rows]
    after = after[next(i for i, e in enumerate(after) if e["action"] == "task.claim") + 1 :]
    assert {(e["action"], e["subject"]) for e in after} >= {
        ("task.requeue", f"task:{task['id']}"),
        ("agent.leave", "agent:acme/a1"),
    }, [(e["action"], e["subject"]) for e in after]


def _counted(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count every Ed25519 signature check (note.PublicKey.verify): linear work is a count, not a time."""
    calls = [0]
    real = note.PublicKey.verify

    def counting(self: note.PublicKey, signature: bytes, message: bytes) -> bool:
        calls[0] += 1
        return real(self, signature, message)

    monkeypatch.setattr(note.PublicKey, "verify", counting)
    return calls


def test_v13_a_long_key_chain_in_reverse_order_verifies_in_linear_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import contextlib

    count = 2000  # 0.55 MB of keys: ~5 s here; quadratic, so 20,000 (5.5 MB) is ~8 minutes
    chain = [_key("osa") for _ in range(count + 1)]
    keys = [{"t": "key", "host": "osa", "key": chain[0][1].vkey}]
    when = "2026-12-01T12:00:00.000000Z"
    keys += [_endorsed(chain[n][0], chain[n][1], chain[n + 1][1], when) for n in reversed(range(count))]
    private, public = chain[-1]
    _bundle(tmp_path / "b.jsonl", "osa", private, public, _entries("osa", 2), keys=keys)
    calls = _counted(monkeypatch)
    with contextlib.suppress(AuditError):  # refusing such a chain is as good, if quick
        verify(tmp_path / "b.jsonl", [chain[0][1]])
    assert calls[0] <= 3 * count  # about one signature check a key; a quadratic walk makes ~count**2 / 2


def test_v14_a_witness_reads_another_hosts_key_chain_in_linear_time(monkeypatch: pytest.MonkeyPatch) -> None:
    from colibri.services.audit.signer import _peer_keys
    from colibri.store.audit_trail import AuditKey

    count = 2000  # rows domedog (compromised, its own key) writes to audit_keys, newest first
    chain = [_key("domedog") for _ in range(count + 1)]
    when = "2026-12-01T12:00:00.000000Z"
    rows = [AuditKey(host="domedog", key_id=chain[0][1].key_id, public_key=chain[0][1].vkey, created_at=when)]
    for n in reversed(range(count)):
        endorsement = _endorsed(chain[n][0], chain[n][1], chain[n + 1][1], when)["endorsement"]
        rows.append(AuditKey(host="domedog", key_id=chain[n + 1][1].key_id, public_key=chain[n + 1][1].vkey,
                             created_at=when, endorsement=json.dumps(endorsement)))  # fmt: skip
    calls = _counted(monkeypatch)
    trusted = _peer_keys("domedog", [chain[0][1].vkey], rows)  # on osa's database thread, each cosign run
    assert len(trusted) == count + 1
    assert (
        count <= calls[0] <= 3 * count
    )  # one signature check a key (counted: the counter sees them), not one per pair


def test_v15_an_entry_in_one_hosts_chain_that_names_another_host_is_refused(tmp_path: Path) -> None:
    private, public = _key("domedog")
    lines, prev = [], GENESIS
    for seq, host in ((1, "domedog"), (2, "osa"), (3, "domedog")):  # #2 claims to be osa's (and seq 2 of it)
        event = Event("agent.destroy" if host == "osa" else "tenant.register", "tenant:acme", tenant="acme")
        encoded = body(seq, "2026-12-01T18:00:00.000000Z", host, "operator:uid=0", event, prev)
        prev = leaf_hash(encoded)
        lines.append(encoded)
    _bundle(tmp_path / "b.jsonl", "domedog", private, public, lines)
    with pytest.raises(AuditError, match="domedog#2"):
        verify(tmp_path / "b.jsonl", [public])


def test_v15_an_entry_whose_detail_names_the_chains_host_is_still_refused(tmp_path: Path) -> None:
    """Sibling: the host check reads the top-level host, not a ``host`` key nested in the detail."""
    private, public = _key("domedog")
    lines, prev = [], GENESIS
    for seq, host in ((1, "domedog"), (2, "osa"), (3, "domedog")):
        event = Event("tenant.register", "tenant:acme", tenant="acme", detail={"x": {"a": 1, "host": "domedog"}})
        encoded = body(seq, "2026-12-01T18:00:00.000000Z", host, "operator:uid=0", event, prev)
        prev = leaf_hash(encoded)
        lines.append(encoded)
    _bundle(tmp_path / "b.jsonl", "domedog", private, public, lines)
    with pytest.raises(AuditError, match="domedog#2"):
        verify(tmp_path / "b.jsonl", [public])


def test_v15_a_signer_or_witness_does_not_fold_an_entry_naming_another_host_or_seq() -> None:
    """Sibling: the fold a signer and a witness make checks each body's host and seq, not only the row's."""
    from colibri.audit.merkle import CompactRange
    from colibri.services.audit.signer import _fold

    class Rows:
        def __init__(self, lines: list[bytes]) -> None:
            self.lines = lines

        def entries(self, host: str, after: int = 0, upto: int | None = None) -> Any:
            for seq, line in enumerate(self.lines, start=1):
                if after < seq <= (upto or seq):
                    yield seq, line.decode(), leaf_hash(line)

    good = _entries("domedog", 3)
    assert _fold(Rows(good), "domedog", CompactRange(), "0" * 64, 3) == leaf_hash(good[-1])  # type: ignore[arg-type]
    for host, seq in (("osa", 2), ("domedog", 7)):
        lines, prev = [], GENESIS
        for n in (1, 2, 3):
            event = Event("tenant.register", "tenant:acme", tenant="acme")
            stamp = "2026-12-01T18:00:00.000000Z"
            encoded = body(seq if n == 2 else n, stamp, host if n == 2 else "domedog", "operator:uid=0", event, prev)
            prev = leaf_hash(encoded)
            lines.append(encoded)
        with pytest.raises(AuditError, match="domedog#2 says"):
            _fold(Rows(lines), "domedog", CompactRange(), "0" * 64, 3)  # type: ignore[arg-type]


def test_v9_a_junk_checkpoint_row_does_not_hide_what_is_pending(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Sibling: the daemon signs when ``pending`` says so; a junk row larger than the head must not
    make it zero or negative (the loop would never sign), and the signer reports the row."""
    from colibri.store.audit_trail import AuditCheckpoint, TrailRepo

    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        osa = AuditSigner(store, KeyDir(tmp_path / "osa" / "audit", "osa"), "osa")
        with origin.acting("daemon", host="osa", vouch=osa.keys.entry_key):
            with store.session() as session:
                AuditRepo(session).append(Event("tenant.register", "tenant:acme", tenant="acme"))
            assert osa.checkpoint() is not None
            with store.session() as session:
                junk = AuditCheckpoint(host="osa", size=10**6, root="00" * 32, key_id="00000000", note="junk",
                                       signed_at="2026-12-01T18:00:00.000000Z")  # fmt: skip
                TrailRepo(session).add_checkpoint(junk)
            with store.session() as session:
                AuditRepo(session).append_many(
                    [Event("tenant.register", f"tenant:t{n}", tenant=f"t{n}") for n in range(3)]
                )
            assert osa.pending() == 3
            assert osa.checkpoint() is not None and osa.pending() == 0
        assert "osa@1000000" in caplog.text and "not signed by this host's key" in caplog.text
    finally:
        store.close()


def test_v3_an_entry_key_goes_only_with_its_own_host() -> None:
    """Sibling: ``acting`` keeps the entry key for the current host and drops it for another one."""

    def key() -> bytes:
        return b"k" * 32

    with origin.acting("daemon", host="osa", vouch=key):
        assert origin.current().vouch is key
        with origin.acting("tenant:acme"):
            assert origin.current().vouch is key  # a request on this host: its entries are this host's
        with origin.acting("daemon", host="domedog"):
            assert origin.current().vouch is None  # another host's name: not under osa's key


def test_v9_a_junk_checkpoint_row_does_not_stop_the_witnesses_cosigning(tmp_path: Path) -> None:
    """Sibling: a witness cosigned the largest row of a host; a junk one stayed the largest, refused
    once and then skipped for good, so the host's real checkpoints were never cosigned again."""
    from colibri.store.audit_trail import AuditCheckpoint, TrailRepo

    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        osa = AuditSigner(store, KeyDir(tmp_path / "osa" / "audit", "osa"), "osa")
        domedog = AuditSigner(store, KeyDir(tmp_path / "domedog" / "audit", "domedog"), "domedog")
        for signer in (osa, domedog):
            with origin.acting("daemon", host=signer.host, vouch=signer.keys.entry_key):
                with store.session() as session:
                    AuditRepo(session).append(Event("tenant.register", "tenant:acme", tenant="acme"))
                assert signer.checkpoint() is not None
        with origin.acting("daemon", host="domedog", vouch=domedog.keys.entry_key):
            assert [s.host for s in domedog.cosign()[0]] == ["osa"]
        with store.session() as session:
            junk = AuditCheckpoint(host="osa", size=10**6, root="00" * 32, key_id="00000000", note="junk",
                                   signed_at="2026-12-01T18:00:00.000000Z")  # fmt: skip
            TrailRepo(session).add_checkpoint(junk)
        with origin.acting("daemon", host="osa", vouch=osa.keys.entry_key):
            with store.session() as session:
                AuditRepo(session).append(Event("tenant.register", "tenant:t1", tenant="t1"))
            signed = osa.checkpoint()
        assert signed is not None
        with origin.acting("daemon", host="domedog", vouch=domedog.keys.entry_key):
            done, _ = domedog.cosign()
        assert [(s.host, s.size) for s in done] == [("osa", signed.size)]
    finally:
        store.close()
