"""The key file's safety, key rotation, inclusion proofs, and verify with nothing of colibri's (issue 12)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from colibri.adapters.audit_keys import KeyDir
from colibri.errors import PermissionDenied
from tests.conftest import Invoke, require_root
from tests.unit.audit.trail_helpers import export, keys_of, record, verify

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(name="osa")
def osa_fixture(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    monkeypatch.setenv("COLIBRI_DATABASE_URL", url)
    monkeypatch.setenv("COLIBRI_HOST", "osa")
    return url


def test_the_key_is_made_only_its_owner_s_and_an_unsafe_key_file_is_refused(tmp_path: Path) -> None:
    """The key is the user's colibri runs as (root on a host) and nobody else's; the files of
    another uid are refused (that part needs root: chown)."""
    keys = KeyDir(tmp_path / "state" / "audit", "osa")
    loaded = keys.load()
    assert loaded is not None and loaded[1] is True
    key_file = tmp_path / "state" / "audit" / "signing.key"
    assert oct(key_file.stat().st_mode & 0o777) == "0o400" and key_file.stat().st_uid == os.geteuid()
    assert oct((tmp_path / "state" / "audit").stat().st_mode & 0o777) == "0o700"
    again = keys.load()
    assert again is not None and again[1] is False and keys.public(again[0]) == keys.public(loaded[0])
    key_file.chmod(0o644)
    with pytest.raises(PermissionDenied, match="mode 644"):
        keys.load()
    key_file.chmod(0o400)
    elsewhere = tmp_path / "elsewhere.key"
    key_file.rename(elsewhere)
    key_file.symlink_to(elsewhere)
    with pytest.raises(PermissionDenied, match="symlink"):
        keys.load()
    (tmp_path / "state" / "audit").chmod(0o755)
    with pytest.raises(PermissionDenied, match="mode 755"):
        keys.load()


def test_a_key_dir_is_taken_only_as_the_running_user_s(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A key directory and key of uid 1000 are refused by root and taken by uid 1000 (this process
    made to look like it: root reads either), so an operator without root keeps a key of their own
    under XDG paths; before, any uid but 0 was refused with NeedsRoot."""
    require_root("chown to another uid")
    directory = tmp_path / "state" / "audit"
    keys = KeyDir(directory, "osa")
    assert keys.owned()  # not made yet, where this user may make it
    made = keys.load()
    assert made is not None
    key = keys.entry_key()
    for path in (directory, directory / "signing.key", directory / "entry.key"):
        os.chown(path, 1000, 1000)
    with pytest.raises(PermissionDenied, match="is not owned by uid 0"):
        KeyDir(directory, "osa").load()
    assert not keys.owned()  # audit prove/keys read another user's state, never sign over it
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert keys.owned()
    again = KeyDir(directory, "osa")
    found = again.load()
    assert found is not None and again.public(found[0]) == keys.public(made[0])
    assert again.entry_key() == key


def test_rotation_endorses_the_new_key_and_the_old_one_verifies_both(osa: str, invoke: Invoke, tmp_path: Path) -> None:
    record(osa, "osa", 5)
    first = export(invoke, tmp_path / "a.jsonl")
    assert first["fresh_checkpoint_size"] == 6
    old = keys_of(invoke)
    code, out, err = invoke("audit", "keys", "--rotate", "--json")
    assert code == 0, err
    rows = json.loads(out)["data"]
    assert [r["retired_at"] is None for r in rows] == [False, True]
    new = next(r for r in rows if r["retired_at"] is None)
    assert new["this_host"] and new["endorsed_by"] == rows[0]["key_id"]
    code, out, _ = invoke("audit", "log", "--json")
    assert [e["action"] for e in json.loads(out)["data"]][-1] == "audit.key_rotate"
    record(osa, "osa", 3, start=5)
    export(invoke, tmp_path / "b.jsonl")
    code, text = verify(invoke, tmp_path / "b.jsonl", old)  # the old key, and the new one it endorsed
    assert code == 0, text
    code, text = verify(invoke, tmp_path / "b.jsonl", [new["public_key"]])  # the new one alone: not the old one
    assert code == 21 and "is not one given with --key" in text, text


def test_prove_gives_a_proof_verify_checks_offline(osa: str, invoke: Invoke, tmp_path: Path) -> None:
    record(osa, "osa", 20)
    code, out, err = invoke("audit", "prove", "7")
    assert code == 0, err
    proof = json.loads(out)
    assert proof["size"] == 21 and len(proof["proof"]) == 5
    saved = tmp_path / "proof.json"
    saved.write_text(out)
    keys = keys_of(invoke)
    code, out, err = invoke("audit", "verify", "--proof", str(saved), "--key", keys[0])
    assert code == 0 and "OK: entry osa#7 is in the tree of size 21" in out, out + err
    proof["entry"] = proof["entry"].replace('"outcome":"ok"', '"outcome":"failed"')
    saved.write_text(json.dumps(proof))
    code, out, err = invoke("audit", "verify", "--proof", str(saved), "--key", keys[0])
    assert code == 21 and "entry osa#7: not included" in err, out + err
    code, out, err = invoke("audit", "prove", "99")
    assert code == 4 and "not covered" in err


def test_verify_runs_with_no_colibri_state_at_all(osa: str, invoke: Invoke, tmp_path: Path) -> None:
    """A copy of the bundle, garbage COLIBRI_* settings, an unreadable state dir, no database: verify
    works, and never imports the store or the settings."""
    record(osa, "osa", 5)
    export(invoke, tmp_path / "a.jsonl")
    keys = keys_of(invoke)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    copy = elsewhere / "copy.jsonl"
    copy.write_bytes((tmp_path / "a.jsonl").read_bytes())
    (tmp_path / "store.db").unlink()
    locked = tmp_path / "locked"
    locked.mkdir(mode=0)
    env = {
        "PATH": os.environ["PATH"],
        "COLIBRI_STATE_DIR": str(locked),
        "COLIBRI_DATABASE_URL": "postgresql://nowhere/x",
        "COLIBRI_NO_SUCH_SETTING": "1",
        "COLIBRI_CONFIG": str(tmp_path / "missing.toml"),
        "COLIBRI_HOST": "!bad!",
    }
    script = (
        "import sys\nfrom colibri.cli.app import run\n"
        f"code = run(['audit', 'verify', {str(copy)!r}, '--key', {keys[0]!r}])\n"
        "bad = sorted(m for m in sys.modules if m.startswith(('colibri.store', 'colibri.settings', 'sqlalchemy', "
        "'sqlmodel', 'colibri.services')))\n"
        "print('imported:', bad)\nsys.exit(code if not bad else 99)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "OK: 6 entries of 1 host(s)" in done.stdout and "imported: []" in done.stdout


def test_a_hostile_bundle_is_refused_in_bounded_memory(tmp_path: Path) -> None:
    from colibri.audit import note, verify_work
    from colibri.audit.verify import verify as check
    from colibri.errors import AuditError

    key = note.PublicKey("colibri.audit/osa", bytes(32))
    path = tmp_path / "hostile.jsonl"
    with path.open("wb") as out:
        out.write(b'{"t":"bundle","format":"colibri-audit","version":1,"host":"osa","time":"x"}\n')
        out.write(b'{"action":' + b"A" * (verify_work.MAX_LINE + verify_work.BLOCK))  # no newline, ever
    with pytest.raises(AuditError, match="longer than"):
        check(path, [key])
    path.write_bytes(b'{"t":"bundle","format":"colibri-audit","version":1,"host":"osa","time":"x"}\n\x1b[31m\n')
    with pytest.raises(AuditError, match=r"without the export statement|out of place"):
        check(path, [key])


def test_a_memory_cut_short_by_a_crash_reads_as_none(tmp_path: Path) -> None:
    keys = KeyDir(tmp_path / "state" / "audit", "osa")
    keys.remember({"self": {"size": 3}})
    assert keys.memory() == {"self": {"size": 3}}
    (tmp_path / "state" / "audit" / "memory.json").write_bytes(b'{"self": {"si')
    assert keys.memory() == {}
