"""Rendering and the safe writer of ``.env`` files (colibri/adapters/envfile.py)."""

import os
import stat
from pathlib import Path

import pytest

from colibri.adapters import envfile
from colibri.adapters.envfile import Entry, parse_lines, render
from colibri.errors import PermissionDenied, SecretsError, SecretsRefused
from tests.conftest import require_root

UID, GID = os.geteuid(), os.getegid()


def body(data: bytes) -> list[str]:
    return data.decode().split("\n")[1:-1]  # without the header comment and the final newline


# --- rendering ---------------------------------------------------------------------------------


def test_render_sorts_keys_and_quotes_values() -> None:
    data = render(
        [Entry("B", "it's", "item b"), Entry("A", "x y $HOME `id`", "item a"), Entry("C", "", "c")],
        "secrets of tenant acme from collection acme",
    )
    assert data.startswith(b"# colibri: secrets of tenant acme from collection acme.")
    assert body(data) == ["A='x y $HOME `id`'", 'B="it\'s"', "C=''"]


def test_multiline_value_is_kept_verbatim() -> None:
    assert body(render([Entry("PEM", "-----BEGIN\nabc\n-----END\n", "f")], "h")) == [
        "PEM='-----BEGIN",
        "abc",
        "-----END",
        "'",
    ]


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("a\0b", "NUL"),
        ("a\rb", "carriage return"),
        ("${HOME}", "'${'"),
        ("a\\\\b", "'\\\\'"),
        ("ends\\", "ends with a backslash"),
        ('it\'s "quoted"', "single quote together"),
        ("it's $5", "single quote together"),
        ("\ud800", "lone surrogate"),
        ("x" * (envfile.MAX_VALUE_BYTES + 1), "bytes; at most"),
    ],
)
def test_values_that_cannot_round_trip_are_refused_without_showing_them(value: str, why: str) -> None:
    with pytest.raises(SecretsError) as info:
        render([Entry("KEY", value, "item 'db' field 'KEY'")], "h")
    assert why in str(info.value)
    assert "item 'db' field 'KEY'" in str(info.value)
    if len(value) > 3:
        assert value not in str(info.value)


def test_ten_megabytes_are_refused() -> None:
    with pytest.raises(SecretsError, match="at most"):
        render([Entry("BIG", "x" * 10_000_000, "item big")], "h")


def test_file_size_limit() -> None:
    entries = [Entry(f"K{i}", "v" * 60_000, f"item {i}") for i in range(5)]
    with pytest.raises(SecretsError, match=r"the \.env would be"):
        render(entries, "h")


@pytest.mark.parametrize("key", ["1ABC", "A-B", "A B", "", "É", "A=B", "a.b"])
def test_invalid_key_names(key: str) -> None:
    with pytest.raises(SecretsError, match="invalid key"):
        render([Entry(key, "v", "item x")], "h")


def test_duplicate_key_names_both_sources() -> None:
    with pytest.raises(SecretsError) as info:
        render([Entry("K", "1", "item 'a' field 'K'"), Entry("K", "2", "item 'b' notes line 3")], "h")
    assert str(info.value) == "duplicate key K: from item 'a' field 'K' and from item 'b' notes line 3"


def test_no_entries_is_an_error_not_an_empty_file() -> None:
    with pytest.raises(SecretsError, match=r"refusing to write an empty \.env"):
        render([], "secrets of tenant acme")


def test_parse_lines() -> None:
    text = "# comment\n\nA=1\r\nexport B = x=y \n  C='quoted'\n"
    assert parse_lines(text, "notes") == [
        Entry("A", "1", "notes line 3"),
        Entry("B", " x=y ", "notes line 4"),
        Entry("C", "'quoted'", "notes line 5"),
    ]


def test_parse_lines_refuses_free_text_without_showing_it() -> None:
    with pytest.raises(SecretsError) as info:
        parse_lines("A=1\nsk-secret-token-pasted-alone\n", "item 'x' notes")
    assert str(info.value) == "item 'x' notes line 2 is not KEY=VALUE"


# --- writing -----------------------------------------------------------------------------------


@pytest.fixture(name="jail")
def jail_fixture(tmp_path: Path) -> Path:
    root = tmp_path / "jails" / "acme" / "root"
    (root / "home" / "agent").mkdir(parents=True)
    (root / "etc").mkdir()
    (root / "etc" / "passwd").write_text(f"root:*:0:0::/root:/bin/sh\nagent:*:{UID}:{GID}::/home/agent:/bin/sh\n")
    return root


def write(jail: Path, content: bytes) -> tuple[Path, bool]:
    return envfile.write_jail_env(jail, "agent", content, [jail.parent.parent])


def test_write_creates_0600_file_and_is_idempotent(jail: Path) -> None:
    path, changed = write(jail, b"# h\nA='1'\n")
    assert changed and path == jail / "home" / "agent" / ".env"
    info = path.stat()
    assert stat.S_IMODE(info.st_mode) == 0o600 and (info.st_uid, info.st_gid) == (UID, GID)
    assert path.read_bytes() == b"# h\nA='1'\n"
    inode, mtime = info.st_ino, info.st_mtime_ns
    assert write(jail, b"# h\nA='1'\n") == (path, False)
    assert (path.stat().st_ino, path.stat().st_mtime_ns) == (inode, mtime)
    assert write(jail, b"# h\nA='2'\n") == (path, True)
    assert path.read_bytes() == b"# h\nA='2'\n"
    assert sorted(os.listdir(path.parent)) == [".env"]


def test_loose_mode_is_repaired_even_when_content_is_equal(jail: Path) -> None:
    path, _ = write(jail, b"A='1'\n")
    path.chmod(0o644)
    assert write(jail, b"A='1'\n") == (path, True)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_env_symlink_is_refused_and_its_target_untouched(jail: Path, tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (jail / "home" / "agent" / ".env").symlink_to(victim)
    with pytest.raises(PermissionDenied, match="is a symlink"):
        write(jail, b"A='1'\n")
    assert victim.read_text() == "precious"
    assert (jail / "home" / "agent" / ".env").is_symlink()


def test_home_symlink_to_etc_is_refused(jail: Path, tmp_path: Path) -> None:
    fake_etc = tmp_path / "etc"
    (fake_etc / "agent").mkdir(parents=True)
    (jail / "home" / "agent").rmdir()
    (jail / "home").rmdir()
    (jail / "home").symlink_to(fake_etc)
    with pytest.raises(PermissionDenied, match=r"home: it is a symlink"):
        write(jail, b"A='1'\n")
    assert list((fake_etc / "agent").iterdir()) == []


def test_env_directory_is_refused(jail: Path) -> None:
    (jail / "home" / "agent" / ".env").mkdir()
    with pytest.raises(PermissionDenied, match="not a regular file"):
        write(jail, b"A='1'\n")


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_env_fifo_or_device_is_refused_without_blocking(jail: Path, kind: str) -> None:
    target = jail / "home" / "agent" / ".env"
    if kind == "fifo":
        os.mkfifo(target)
    elif os.geteuid() == 0:
        os.mknod(target, 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    else:
        require_root("mknod of a device node")
    with pytest.raises(PermissionDenied, match="not a regular file"):
        write(jail, b"A='1'\n")


def test_root_outside_allowed_roots(jail: Path, tmp_path: Path) -> None:
    with pytest.raises(PermissionDenied, match="outside the allowed roots"):
        envfile.write_jail_env(jail, "agent", b"A='1'\n", [tmp_path / "elsewhere"])
    with pytest.raises(PermissionDenied, match="not an absolute, normalised path"):
        envfile.write_jail_env(jail / ".." / "root", "agent", b"A='1'\n", [jail.parent.parent])
    assert not (jail / "home" / "agent" / ".env").exists()


def test_jail_root_symlinked_under_allowed_root_is_refused(jail: Path, tmp_path: Path) -> None:
    (jail.parent.parent / "evil").symlink_to(tmp_path / "jails" / "acme")
    with pytest.raises(PermissionDenied, match="evil: it is a symlink"):
        envfile.write_jail_env(jail.parent.parent / "evil" / "root", "agent", b"A='1'\n", [jail.parent.parent])


def test_user_missing_from_jail_passwd(jail: Path) -> None:
    (jail / "etc" / "passwd").write_text("root:*:0:0::/root:/bin/sh\n")
    with pytest.raises(SecretsError, match="user agent is missing"):
        write(jail, b"A='1'\n")
    assert not (jail / "home" / "agent" / ".env").exists()


def test_owner_comes_from_the_jails_passwd(jail: Path) -> None:
    (jail / "etc" / "passwd").write_text("agent:*:4242:4343::/home/agent:/bin/sh\n")
    require_root("fchown to another uid")
    path, _ = write(jail, b"A='1'\n")
    assert (path.stat().st_uid, path.stat().st_gid) == (4242, 4343)


def test_a_user_namespace_jail_shifts_the_passwd_ids_onto_its_block(jail: Path) -> None:
    (jail / "etc" / "passwd").write_text("agent:*:1001:1001::/home/agent:/bin/sh\n")
    require_root("fchown to another uid")
    base = 1_000_000_000
    path, _ = envfile.write_jail_env(jail, "agent", b"A='1'\n", [jail.parent.parent], id_shift=base)
    info = path.stat()
    assert (stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid) == (0o600, base + 1001, base + 1001)
    (jail / "etc" / "passwd").write_text("agent:*:70000:1001::/home/agent:/bin/sh\n")  # not a jail id
    with pytest.raises(SecretsError, match="outside its user namespace"):
        envfile.write_jail_env(jail, "agent", b"A='2'\n", [jail.parent.parent], id_shift=base)
    assert path.read_bytes() == b"A='1'\n"


def test_stale_temp_files_are_removed(jail: Path) -> None:
    home = jail / "home" / "agent"
    (home / ".env.colibri.0123456789abcdef.tmp").write_text("half")
    (home / ".env.colibri.notours.tmp").write_text("other")
    write(jail, b"A='1'\n")
    assert sorted(os.listdir(home)) == [".env", ".env.colibri.notours.tmp"]


def test_home_env_for_spawn_local(tmp_path: Path) -> None:
    home = tmp_path / "homes" / "alice"
    home.mkdir(parents=True)
    path, changed = envfile.write_home_env(home, b"A='1'\n", [tmp_path / "homes"])
    assert changed and path == home / ".env"
    assert (path.stat().st_uid, stat.S_IMODE(path.stat().st_mode)) == (home.stat().st_uid, 0o600)


def test_an_invalid_key_is_not_echoed() -> None:
    pasted = "sk-live-AbCdEf/123+xyz=="  # a secret pasted where a key belongs
    with pytest.raises(SecretsError) as info:
        render([Entry(pasted, "v", "item 'provider' custom field 2")], "h")
    assert "invalid key (item 'provider' custom field 2)" in str(info.value)
    assert "AbCdEf" not in str(info.value)


def test_every_bad_key_and_value_is_named_at_once_by_key_and_origin_never_by_value() -> None:
    """Issue 9: a refused tenant named only its first bad value, one fix per run."""
    entries = [
        Entry("GOOD", "fineval", "item 'env' custom field 1"),
        Entry("NUL", "hunter2\0one", "item 'env' custom field 2"),
        Entry("sk-pasted-xyz", "v", "item 'env' custom field 3"),
        Entry("GOOD", "againval", "item 'other' notes line 4"),
        Entry("CR", "hunter3\rtwo", "item 'other' notes line 5"),
    ]
    problems = ["item 'other' notes line 1 is not KEY=VALUE"]
    with pytest.raises(SecretsRefused) as info:
        render(entries, "secrets of tenant acme from collection acme", problems)
    error = info.value
    assert error.exit_code == 12 and error.total == 5 and len(error.problems) == 5
    assert error.summary == "secrets of tenant acme from collection acme: 5 problems, nothing written"
    assert error.problems[0] == "item 'other' notes line 1 is not KEY=VALUE"
    assert "'NUL' (item 'env' custom field 2) contains a NUL byte" in error.problems[1]
    assert error.problems[2].startswith("invalid key (item 'env' custom field 3)")
    assert error.problems[3] == "duplicate key GOOD: from item 'env' custom field 1 and from item 'other' notes line 4"
    assert "'CR' (item 'other' notes line 5) contains a carriage return" in error.problems[4]
    text = str(error)
    assert all(p in text for p in error.problems)
    assert not any(value in text for value in ("hunter2", "hunter3", "sk-pasted", "fineval", "againval"))


def test_problems_are_counted_past_the_ones_kept() -> None:
    entries = [Entry(f"K{i}", "\0", f"field {i}") for i in range(envfile.MAX_PROBLEMS_KEPT + 5)]
    with pytest.raises(SecretsRefused) as info:
        render(entries, "h")
    assert info.value.total == envfile.MAX_PROBLEMS_KEPT + 5
    assert len(info.value.problems) == envfile.MAX_PROBLEMS_KEPT
    assert str(info.value).endswith("; and 5 more")


def test_parse_lines_can_collect_every_bad_line() -> None:
    problems: list[str] = []
    entries = parse_lines("A=1\nfree text\nB=2\nmore text\n", "item 'x' notes", problems)
    assert [e.key for e in entries] == ["A", "B"]
    assert problems == ["item 'x' notes line 2 is not KEY=VALUE", "item 'x' notes line 4 is not KEY=VALUE"]


PEM = "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1tYXRlcmlhbA==\nNOT_A_KEY=tail\n-----END PRIVATE KEY-----"


@pytest.mark.parametrize("value", [PEM, PEM + "\n", "it's\nB=x", "\n#C=1\n export D=2"])
def test_a_multiline_value_reads_back_as_one_value_and_names_one_key(value: str) -> None:
    import io

    from dotenv import dotenv_values

    data = render([Entry("TLS_KEY", value, "f"), Entry("Z", "z", "g")], "h")
    assert dotenv_values(stream=io.StringIO(data.decode())) == {"TLS_KEY": value, "Z": "z"}
    assert envfile.key_names(data) == ["TLS_KEY", "Z"]  # never a line of the value


def test_key_names_read_keys_as_python_dotenv_does() -> None:
    text = b"# h\nexport A = 'x\nB=y'\n  C=\"it's\nD=\\\"\"\nE=plain=z\n\n# F=no\n"
    assert envfile.key_names(text) == ["A", "C", "E"]


def test_key_names_stop_at_a_quote_never_closed() -> None:
    assert envfile.key_names(b"A='open\nSECRET_TAIL=xyz\n") == ["A"]  # the rest may be A's value


def test_a_header_with_a_line_break_stays_one_comment_line() -> None:
    data = render([Entry("A", "1", "f")], "secrets of tenant t from collection x\nEVIL=1")
    assert envfile.key_names(data) == ["A"]
    assert data.decode().split("\n")[0].startswith("# colibri: ") and data.count(b"\n") == 2
