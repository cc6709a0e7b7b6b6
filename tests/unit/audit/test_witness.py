"""Cosigning between the hosts of one store, and a replayed old checkpoint (issue 12).

What a truncation to an old signed size with that old checkpoint presented as the newest meets:
the host's own signer memory (it refuses to sign over it), another host's cosignature of the
newer size (the bundle then fails), and, when those cosignatures were deleted too, the witness's
memory: it refuses the host's next checkpoint and records the refusal in its own log, which every
later bundle carries.  Not caught: a truncation with every cosignature deleted, on a store the
witness has not looked at since, before the truncated host signs again (the bundle alone cannot
tell a shorter log from an older one; a verifier holding an earlier bundle can, by its sizes).
"""

import os
from pathlib import Path

import pytest

from colibri.adapters.audit_keys import KeyDir
from colibri.audit import origin
from colibri.errors import AuditError
from colibri.services.audit.export import export as export_bundle
from colibri.services.audit.signer import AuditSigner
from colibri.store.db import Store
from tests.conftest import Invoke
from tests.unit.audit.test_tamper import sql
from tests.unit.audit.trail_helpers import export, keys_of, record, verify


@pytest.fixture(name="hive")
def hive_fixture(db_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("COLIBRI_DATABASE_URL", db_url)
    monkeypatch.setenv("COLIBRI_HOST", "osa")
    store = Store(db_url)
    osa = AuditSigner(store, KeyDir(Path(os.environ["COLIBRI_STATE_DIR"]) / "audit", "osa"), "osa")
    domedog = AuditSigner(store, KeyDir(tmp_path / "domedog" / "audit", "domedog"), "domedog")
    yield db_url, osa, domedog
    store.close()


def as_daemon(signer: AuditSigner):  # type: ignore[no-untyped-def]
    return origin.acting("daemon", host=signer.host, vouch=signer.keys.entry_key)


def test_hosts_cosign_each_other_and_a_truncation_is_caught(hive, invoke: Invoke, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url, osa, domedog = hive
    record(url, "osa", 30)
    export(invoke, tmp_path / "a.jsonl")  # osa signs 31
    record(url, "osa", 10, start=30)
    export(invoke, tmp_path / "b.jsonl")  # osa signs 41
    record(url, "domedog", 3)
    with as_daemon(domedog):
        assert domedog.checkpoint() is not None
        done, refused = domedog.cosign()
    assert [(s.host, s.size) for s in done] == [("osa", 41)] and not refused
    with as_daemon(osa):
        done, refused = osa.cosign()
    assert [(s.host, s.size) for s in done] == [("domedog", 4)] and not refused
    keys = keys_of(invoke)
    assert len(keys) == 2
    bundle = tmp_path / "c.jsonl"
    export(invoke, bundle)
    code, out = verify(invoke, bundle, keys)
    assert code == 0 and "cosigned up to 41 by domedog" in out, out

    # truncate osa to its old checkpoint at 31 and present that one as its newest
    last = sql(url, "SELECT leaf FROM audit_entries WHERE host = 'osa' AND seq = 31")[0][0]
    sql(url, "DELETE FROM audit_entries WHERE host = 'osa' AND seq > 31")
    sql(url, "DELETE FROM audit_checkpoints WHERE host = 'osa' AND size > 31")
    sql(url, "UPDATE audit_heads SET seq = 31, leaf = :l WHERE host = 'osa'", l=last)
    with as_daemon(osa), pytest.raises(AuditError, match="this host signed 41"):  # osa's own memory refuses
        osa.checkpoint()
    with as_daemon(domedog):  # exported from the other host, whose signer never signed osa's tree
        export_bundle(domedog, tmp_path / "d.jsonl")
    code, out = verify(invoke, tmp_path / "d.jsonl", keys)
    assert code == 21 and "host domedog of host osa at size 41" in out and "osa#32..41 were deleted" in out, out

    # the cosignatures deleted too: the bundle alone no longer tells (the window stated above) ...
    sql(url, "DELETE FROM audit_cosignatures")
    with as_daemon(domedog):
        export_bundle(domedog, tmp_path / "e.jsonl")
    code, out = verify(invoke, tmp_path / "e.jsonl", keys)
    assert code == 0, out
    # ... until osa (its memory gone with the compromise) signs again: the witness refuses and records it
    (Path(os.environ["COLIBRI_STATE_DIR"]) / "audit" / "memory.json").unlink()
    record(url, "osa", 4, start=500)
    with as_daemon(osa):
        assert osa.checkpoint() is not None  # size 35
    with as_daemon(domedog):
        done, refused = domedog.cosign()
        assert not done and len(refused) == 1 and "older than size 41" in refused[0]
        assert domedog.cosign() == ([], [])  # refused once, recorded once
        export_bundle(domedog, tmp_path / "f.jsonl")
    code, out = verify(invoke, tmp_path / "f.jsonl", keys)
    assert code == 21 and "host domedog refused to cosign host:osa at size 35" in out, out


def test_a_rewritten_history_of_the_same_length_is_refused_by_the_witness(hive, invoke: Invoke) -> None:  # type: ignore[no-untyped-def]
    url, osa, domedog = hive
    record(url, "osa", 10)
    with as_daemon(osa):
        osa.checkpoint()  # 11
    record(url, "domedog", 1)
    with as_daemon(domedog):
        domedog.checkpoint()
        assert [s.size for s in domedog.cosign()[0]] == [11]
    # osa's store rewritten from entry 6 on (and resigned by a compromised osa with fresh memory)
    import json

    from colibri.audit.canonical import canonical
    from colibri.audit.entry import leaf_hash

    sql(url, "DELETE FROM audit_entries WHERE host = 'osa' AND seq > 5")
    sql(url, "DELETE FROM audit_checkpoints WHERE host = 'osa'")
    last = sql(url, "SELECT leaf FROM audit_entries WHERE host = 'osa' AND seq = 5")[0][0]
    sql(url, "UPDATE audit_heads SET seq = 5, leaf = :l WHERE host = 'osa'", l=last)
    (Path(os.environ["COLIBRI_STATE_DIR"]) / "audit" / "memory.json").unlink()
    record(url, "osa", 8, start=900)  # 6..13: another history
    with as_daemon(osa):
        assert osa.checkpoint().size == 13  # type: ignore[union-attr]
    with as_daemon(domedog):
        done, refused = domedog.cosign()
    assert not done and "entry osa#11 is not the one signed before" in refused[0], refused
    assert json and canonical and leaf_hash  # imported for the reader's orientation only


def test_a_long_log_is_cosigned_over_several_runs(hive, invoke: Invoke, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    from colibri.services.audit import signer as signing

    url, osa, domedog = hive
    monkeypatch.setattr(signing, "COSIGN_STEP", 7)
    record(url, "osa", 30)
    with as_daemon(osa):
        assert osa.checkpoint().size == 31  # type: ignore[union-attr]
    record(url, "domedog", 1)
    runs = []
    with as_daemon(domedog):
        domedog.checkpoint()
        for _ in range(10):
            done, refused = domedog.cosign()
            assert not refused
            runs.append([s.size for s in done])
            if done:
                break
    assert runs == [[], [], [], [], [31]]  # 7 + 7 + 7 + 7 entries folded, then the last 3 and the cosignature
