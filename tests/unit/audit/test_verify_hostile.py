"""``audit verify`` on a hostile bundle: every outcome is OK or exit 21 naming the problem (never an
internal error), and nothing the bundle holds reaches the operator unsigned or unescaped."""

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from colibri.audit import merkle, note
from colibri.audit.canonical import canonical
from colibri.audit.entry import GENESIS, Event, body, leaf_hash
from colibri.audit.verify import verify
from colibri.errors import AuditError
from tests.conftest import Invoke

SIGNED = "2026-12-01T18:00:01.000000Z"
ROTATED = "2026-12-01T12:00:00.000000Z"
DEEP = "[" * 30000 + "]" * 30000
DEEP_MARK = "\x00deep\x00"  # a value the fuzzer sets: spliced in as a nesting deeper than the parser goes


def _key(host: str, seed: int) -> tuple[Ed25519PrivateKey, note.PublicKey]:
    private = Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32)
    raw = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return private, note.PublicKey(note.key_name(host), raw)


OLD_PRIVATE, OLD = _key("osa", 1)  # given with --key; endorsed NEW, which signs everything
NEW_PRIVATE, NEW = _key("osa", 2)
WITNESS_PRIVATE, WITNESS = _key("domedog", 3)  # given with --key; cosigns osa's checkpoint


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _entries(host: str, count: int, ts: str = "2026-12-01T18:00:00.000000Z") -> list[bytes]:
    found, prev = [], GENESIS
    for seq in range(1, count + 1):
        encoded = body(seq, ts, host, "operator:uid=0", Event("tenant.register", f"tenant:t{seq}", tenant="t"), prev)
        prev = leaf_hash(encoded)
        found.append(encoded)
    return found


def _chained(values: list[dict[str, Any]]) -> list[bytes]:
    """Entries of any content (canonical bytes), each naming its predecessor's leaf."""
    found, prev = [], GENESIS
    for value in values:
        encoded = canonical(value | {"prev": prev})
        prev = leaf_hash(encoded)
        found.append(encoded)
    return found


def _root(lines: list[bytes]) -> bytes:
    return merkle.root([merkle.leaf(line) for line in lines])


def _records(
    lines: list[bytes], heads: dict[str, list[bytes]] | None = None, export_time: str = SIGNED
) -> list[dict[str, Any]]:
    """The records of a bundle of osa's ``lines``: a key rotation, a checkpoint at size 3 signed by
    the new key, a witness's cosignature of it, and the export over ``heads`` (default osa's)."""
    signed = _root(lines[:3])
    checkpoint = note.sign(note.Checkpoint("osa", 3, signed, SIGNED), NEW, NEW_PRIVATE.sign)
    cosigned = WITNESS_PRIVATE.sign(note.cosign_message(note.Checkpoint("osa", 3, signed, SIGNED), SIGNED))
    endorsement = {
        "by": OLD.key_id,
        "time": ROTATED,
        "signature": _b64(OLD_PRIVATE.sign(note.endorse_message(NEW, ROTATED))),
    }
    claimed = {h: (len(v), _root(v).hex()) for h, v in (heads or {"osa": lines}).items()}
    exported = NEW_PRIVATE.sign(note.export_message("osa", export_time, claimed))
    return [
        {"t": "bundle", "format": "colibri-audit", "version": 1, "host": "osa", "time": export_time},
        {"t": "key", "host": "osa", "key": OLD.vkey, "retired_at": ROTATED},
        {"t": "key", "host": "osa", "key": NEW.vkey, "endorsement": endorsement},
        {"t": "key", "host": "domedog", "key": WITNESS.vkey},
        {"t": "checkpoint", "note": checkpoint},
        {
            "t": "cosignature",
            "host": "osa",
            "size": 3,
            "root": _b64(signed),
            "witness": "domedog",
            "key_id": WITNESS.key_id,
            "time": SIGNED,
            "signature": _b64(cosigned),
        },
        {
            "t": "export",
            "host": "osa",
            "time": export_time,
            "heads": {h: list(v) for h, v in claimed.items()},
            "key_id": NEW.key_id,
            "signature": _b64(exported),
        },
    ]


def _dump(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).replace(json.dumps(DEEP_MARK), DEEP).encode()


def _lines(records: list[dict[str, Any]], entries: list[bytes]) -> list[bytes]:
    return [_dump(r) for r in records[:-1]] + entries + [_dump(records[-1])]


def _write(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path


TRUSTED = [OLD, WITNESS]
KEY_ARGS = ["--key", OLD.vkey, "--key", WITNESS.vkey]


def test_the_hostile_tests_bundle_verifies(tmp_path: Path, invoke: Invoke) -> None:
    entries = _entries("osa", 5)
    path = _write(tmp_path / "b.jsonl", _lines(_records(entries), entries))
    report = verify(path, TRUSTED)
    assert (report.exported_by, report.exported_at) == ("osa", SIGNED)
    assert (report.hosts["osa"].entries, report.hosts["osa"].unsigned) == (5, 2)
    assert report.hosts["osa"].cosigned_by == {"domedog"}
    code, out, err = invoke("audit", "verify", str(path), *KEY_ARGS)
    assert code == 0, err
    assert out.startswith("OK: 5 entries of 2 host(s), exported by osa at " + SIGNED), out


def _refused(path: Path, invoke: Invoke, why: str) -> None:
    with pytest.raises(AuditError, match=why):
        verify(path, TRUSTED)
    code, out, err = invoke("audit", "verify", str(path), *KEY_ARGS)
    assert code == 21, out + err
    assert err.count("\n") == 1 and "internal error" not in err, err


def test_a_cosignature_of_a_malformed_host_is_refused_not_an_internal_error(tmp_path: Path, invoke: Invoke) -> None:
    entries = _entries("osa", 5)
    records = _records(entries)
    records[5]["host"] = "../x"  # note.cosign_message named it outside the BadNote guard
    _refused(_write(tmp_path / "b.jsonl", _lines(records, entries)), invoke, "bad host name")


def test_a_checkpoint_size_of_unicode_digits_is_refused_not_an_internal_error(tmp_path: Path, invoke: Invoke) -> None:
    entries = _entries("osa", 5)
    records = _records(entries)
    records[4]["note"] = records[4]["note"].replace("\n3\n", "\n\u00b2\n", 1)  # "²".isdigit(), int("²") raises
    _refused(_write(tmp_path / "b.jsonl", _lines(records, entries)), invoke, "malformed checkpoint")


@pytest.mark.parametrize("where", ["first entry", "broken chain", "refusal"])
def test_a_deeply_nested_entry_is_refused_not_an_internal_error(tmp_path: Path, invoke: Invoke, where: str) -> None:
    entries = _entries("osa", 5)
    deep = b'{"action":' + DEEP.encode() + b',"prev":"' + b"f" * 64 + b'"}'
    if where == "first entry":
        entries[0] = b'{"action":' + DEEP.encode() + b"}"
    elif where == "broken chain":
        entries[3] = deep
    else:  # an unsigned entry, chained, that reads as a cosignature refusal
        prev = leaf_hash(entries[4]).encode()
        entries.append(
            b'{"action":"audit.cosign","outcome":"refused","x":' + DEEP.encode() + b',"prev":"' + prev + b'"}'
        )
    records = _records(entries)
    _refused(_write(tmp_path / "b.jsonl", _lines(records, entries)), invoke, "verify")


def test_an_export_time_the_exporter_signed_is_still_only_a_time(tmp_path: Path, invoke: Invoke) -> None:
    entries = _entries("osa", 5)
    forged = SIGNED + "\r\x1b[2K"  # within the 32 characters a time may have
    records = _records(entries, export_time=forged)  # signed, header and statement alike
    _refused(_write(tmp_path / "b.jsonl", _lines(records, entries)), invoke, "time .* is malformed")


def test_a_host_name_with_a_final_newline_is_refused(tmp_path: Path, invoke: Invoke) -> None:
    """``$`` matched before a final newline, so "osa\\n" passed as a host name into the report."""
    entries = _entries("osa", 5)
    other = _chained([{"action": "tenant.register", "host": "zed\n", "seq": 1, "ts": SIGNED}])
    records = _records(entries, heads={"osa": entries, "zed\n": other})
    _refused(_write(tmp_path / "b.jsonl", _lines(records, entries + other)), invoke, "valid host")
    assert note.HOST.match("osa\n") is None and note.TIME.match(SIGNED + "\n") is None


def test_an_unsigned_tail_reports_its_time_only_when_it_is_one(tmp_path: Path, invoke: Invoke) -> None:
    """The hot loop never parses an entry: the 27 bytes after its ``,"ts":"`` were reported as they are."""
    entries = _entries("osa", 3)
    prev = leaf_hash(entries[2])
    forged = "\x1b[2J\r  forged line here..."  # not a time (an entry as a hostile store could hold it)
    entries.append(body(4, forged, "osa", "operator:uid=0", Event("tenant.register", "tenant:t4", tenant="t"), prev))
    path = _write(tmp_path / "b.jsonl", _lines(_records(entries), entries))
    report = verify(path, TRUSTED)
    assert report.hosts["osa"].unsigned == 1
    assert report.hosts["osa"].unsigned_since is None, report.hosts["osa"].unsigned_since
    code, out, err = invoke("audit", "verify", str(path), *KEY_ARGS)
    assert code == 0, err
    assert "(since -)" in out, out


def test_the_text_report_shows_the_signed_export_time_and_no_forged_line(tmp_path: Path, invoke: Invoke) -> None:
    entries = _entries("osa", 5)
    records = _records(entries)
    records[0]["time"] = "2027-06-01T00:00:00.000000Z\n  osa: 9999 entries, cosigned up to 9999 by domedog"
    path = _write(tmp_path / "b.jsonl", _lines(records, entries))
    code, out, err = invoke("audit", "verify", str(path), *KEY_ARGS)
    assert code == 0, err
    assert f"exported by osa at {SIGNED};" in out and "9999" not in out, out
    assert len(out.splitlines()) == 3, out  # the OK line and one per host


# ---- the fuzzer --------------------------------------------------------------------------------

HOSTILE_TEXT = st.sampled_from(
    ["../x", "osa\n", "osa", "domedog", "\u00b2", "\u0663", "\x1b[2J", "", "a" * 300, SIGNED, SIGNED + "\n",
     "colibri.audit/osa", NEW.vkey, OLD.key_id, NEW.key_id, "\u2014", DEEP_MARK, "2026-13-99T99:99:99.999999Z"]
)  # fmt: skip
SCALARS = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=20)
VALUES = HOSTILE_TEXT | st.recursive(
    SCALARS | HOSTILE_TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6) | HOSTILE_TEXT, inner, max_size=3),
    max_leaves=6,
)
FIELDS = st.sampled_from(
    ["t", "host", "time", "size", "note", "heads", "key", "endorsement", "seq", "prev", "ts", "witness", "key_id",
     "root", "signature", "format", "version", "action", "outcome", "detail", "subject", "by", "osa"]
)  # fmt: skip
INDEX = st.integers(0, 20)
MUTATIONS = st.one_of(
    st.tuples(st.just("set"), INDEX, FIELDS, VALUES),
    st.tuples(st.just("nested"), INDEX, FIELDS, FIELDS, VALUES),
    st.tuples(st.just("char"), INDEX, st.integers(0, 400), st.sampled_from(list("\n 0123\u00b2+\u2014=Aa/\x1b"))),
    st.tuples(st.just("byte"), INDEX, st.integers(0, 400), st.integers(0, 255)),
    st.tuples(st.just("delete"), INDEX),
    st.tuples(st.just("duplicate"), INDEX),
    st.tuples(st.just("swap"), INDEX, INDEX),
    st.tuples(st.just("raw"), INDEX, st.binary(max_size=40) | st.just(DEEP.encode())),
)


def _mutate(lines: list[bytes], mutation: tuple[Any, ...]) -> None:
    kind, at = mutation[0], mutation[1] % len(lines)
    if kind in ("set", "nested", "char"):
        value = json.loads(lines[at])
        if kind == "set":
            value[mutation[2]] = mutation[3]
        elif kind == "nested":
            inner = value.get(mutation[2])
            if isinstance(inner, dict):
                inner[mutation[3]] = mutation[4]
            else:
                value[mutation[2]] = {mutation[3]: mutation[4]}
        else:  # a character of a string field (a checkpoint's note, a key, a signature...)
            texts = [k for k, v in value.items() if isinstance(v, str) and v]
            if not texts:
                return
            name = texts[mutation[2] % len(texts)]
            text = value[name]
            spot = mutation[2] % len(text)
            value[name] = text[:spot] + mutation[3] + text[spot + 1 :]
        lines[at] = _dump(value)
    elif kind == "byte" and lines[at]:
        line = bytearray(lines[at])
        line[mutation[2] % len(line)] = mutation[3]
        lines[at] = bytes(line)
    elif kind == "delete":
        del lines[at]
    elif kind == "duplicate":
        lines.insert(at, lines[at])
    elif kind == "swap":
        other = mutation[2] % len(lines)
        lines[at], lines[other] = lines[other], lines[at]
    elif kind == "raw":
        lines[at] = mutation[2]


@settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(mutations=st.lists(MUTATIONS, min_size=1, max_size=3))
def test_fuzz_a_mutated_bundle_verifies_or_fails_with_the_audit_exit_code(
    tmp_path: Path, invoke: Invoke, mutations: list[tuple[Any, ...]]
) -> None:
    entries = _entries("osa", 5)
    lines = _lines(_records(entries), entries)
    for mutation in mutations:
        if lines:
            try:
                _mutate(lines, mutation)
            except (ValueError, AttributeError, TypeError, RecursionError):
                continue  # a line no longer JSON (an earlier raw or byte mutation): leave it
    path = _write(tmp_path / "fuzzed.jsonl", lines)
    code, out, err = invoke("--debug", "audit", "verify", str(path), *KEY_ARGS)
    assert code in (0, 21), (code, out, err)
    if code == 21:
        pass
    else:  # a mutation the signatures do not cover (an unsigned header field, a key's retired_at...)
        assert f" at {SIGNED};" in out, out
        report = out.splitlines()
        assert report[0].startswith("OK: ") and all(line.startswith("  ") for line in report[1:]), out
        assert all(line.isprintable() for line in report), out


def _proof(entries: list[bytes], seq: int) -> dict[str, Any]:
    leaves = [merkle.leaf(line) for line in entries]
    checkpoint = note.sign(note.Checkpoint("osa", len(entries), merkle.root(leaves), SIGNED), OLD, OLD_PRIVATE.sign)
    return {"format": "colibri-audit-proof", "version": 1, "host": "osa", "seq": seq, "size": len(entries),
            "entry": entries[seq - 1].decode(), "checkpoint": checkpoint,
            "proof": [_b64(h) for h in merkle.inclusion_proof(leaves, seq - 1)]}  # fmt: skip


def test_the_hostile_tests_proof_verifies(tmp_path: Path, invoke: Invoke) -> None:
    path = tmp_path / "p.json"
    path.write_bytes(_dump(_proof(_entries("osa", 5), 2)))
    code, out, err = invoke("audit", "verify", "--proof", str(path), *KEY_ARGS)
    assert code == 0, err
    assert out.startswith(f"OK: entry osa#2 is in the tree of size 5 signed {SIGNED}"), out


@settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(mutations=st.lists(MUTATIONS, min_size=1, max_size=3), wrapped=st.booleans())
def test_fuzz_a_mutated_proof_verifies_or_fails_with_the_audit_exit_code(
    tmp_path: Path, invoke: Invoke, mutations: list[tuple[Any, ...]], wrapped: bool
) -> None:
    proof = _proof(_entries("osa", 5), 2)
    lines = [_dump({"ok": True, "data": proof} if wrapped else proof)]
    for mutation in mutations:
        if lines:
            try:
                _mutate(lines, mutation)
            except (ValueError, AttributeError, TypeError, RecursionError):
                continue
    path = _write(tmp_path / "p.json", lines[:1])
    code, out, err = invoke("audit", "verify", "--proof", str(path), *KEY_ARGS)
    assert code in (0, 21), (code, out, err)
    if code == 21:
        assert err.startswith("colibri: audit") and err.count("\n") == 1, err
    else:
        assert out.startswith("OK: entry osa#") and out.count("\n") == 1 and out[:-1].isprintable(), out
