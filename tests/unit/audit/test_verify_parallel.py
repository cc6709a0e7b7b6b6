"""``audit verify`` on a large bundle with a core to spare: the trees are folded and the
checkpoints' signatures checked in second processes; failures there are reported the same way."""

import base64
import json
from pathlib import Path

import pytest

from colibri.audit import verify as checking
from colibri.audit import verify_work
from colibri.audit.canonical import canonical
from colibri.audit.entry import leaf_hash
from colibri.audit.verify_proof import read_keys
from colibri.errors import AuditError
from tests.conftest import Invoke
from tests.unit.audit.trail_helpers import export, keys_of, record


@pytest.fixture(name="bundle")
def bundle_fixture(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, invoke: Invoke) -> tuple[Path, list[str]]:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    monkeypatch.setenv("COLIBRI_DATABASE_URL", url)
    monkeypatch.setenv("COLIBRI_HOST", "osa")
    for start in range(0, 600, 100):  # six commands: six checkpoints
        record(url, "osa", 100, start=start)
        export(invoke, tmp_path / "b.jsonl")
    monkeypatch.setattr(checking, "FOLD_ASIDE_BYTES", 0)
    monkeypatch.setattr(checking, "PARALLEL_NOTES", 1)
    monkeypatch.setattr(checking, "FOLD_BLOCK", 32 * 7)
    monkeypatch.setattr(verify_work, "idle_core", lambda: True)
    return tmp_path / "b.jsonl", keys_of(invoke)


def test_an_intact_large_bundle_verifies_aside(bundle: tuple[Path, list[str]]) -> None:
    path, keys = bundle
    started: list[object] = []
    real = checking._Verifier.fold_aside

    def spy(self: "checking._Verifier") -> None:
        real(self)
        started.append(self.folding)

    checking._Verifier.fold_aside = spy  # type: ignore[method-assign]
    try:
        report = checking.verify(path, read_keys(keys))
    finally:
        checking._Verifier.fold_aside = real  # type: ignore[method-assign]
    assert report.hosts["osa"].entries == 601 and report.hosts["osa"].checkpoints == 6
    assert len(started) == 1 and started[0] is not None  # the folding process was used


def test_a_rechained_edit_is_caught_by_the_folding_process(bundle: tuple[Path, list[str]]) -> None:
    path, keys = bundle
    lines = path.read_bytes().split(b"\n")
    first = next(i for i, line in enumerate(lines) if line.startswith(b'{"action"'))
    prev = None
    for i in range(first + 249, first + 601):  # entry 250 changed, every later one chained to it
        value = json.loads(lines[i])
        if prev is None:
            value["outcome"] = "failed"
        else:
            value["prev"] = prev
        lines[i] = canonical(value)
        prev = leaf_hash(lines[i])
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(AuditError, match=r"checkpoint of host osa at size 3\d\d: the entries do not hash"):
        checking.verify(path, read_keys(keys))


def test_a_bad_signature_is_caught_by_the_signature_process(bundle: tuple[Path, list[str]]) -> None:
    path, keys = bundle
    lines = path.read_bytes().split(b"\n")
    at = [i for i, line in enumerate(lines) if line.startswith(b'{"t":"checkpoint"')][2]
    record_ = json.loads(lines[at])
    body, _, sig = record_["note"].rpartition(" ")
    blob = bytearray(base64.b64decode(sig))
    blob[10] ^= 1
    record_["note"] = f"{body} {base64.b64encode(bytes(blob)).decode()}\n"
    lines[at] = json.dumps(record_, separators=(",", ":")).encode()
    path.write_bytes(b"\n".join(lines))
    wrong = r"checkpoint of host osa at size \d+: the signature of key \w+ does not verify"
    with pytest.raises(AuditError, match=wrong):
        checking.verify(path, read_keys(keys))
