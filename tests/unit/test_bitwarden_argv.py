"""The bw adapter with a FakeRunner injected: argv, environment, call order, error mapping."""

import json
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pydantic import SecretStr

from colibri.adapters.bitwarden import Bitwarden, BwConfig, normalise_url
from colibri.adapters.bitwarden_output import json_complete
from colibri.adapters.credentials import OperatorCredentials
from colibri.adapters.runner import CommandResult
from colibri.errors import SecretsError, VaultLocked

ORG = "7d3c7f2e-0000-4000-8000-000000000001"
URL = "https://vault.example.org"
CREDS = OperatorCredentials(SecretStr("user.abc"), SecretStr("client-secret-xyz"), SecretStr("master pw 42"))
SESSION = "S" * 86 + "=="


@dataclass
class Call:
    argv: tuple[str, ...]
    env: dict[str, str]
    secret_output: bool
    complete: Callable[[bytearray], bool] | None = None


Reply = tuple[int, str, str]  # exit status, stdout, stderr


@dataclass
class FakeRunner:
    """Scripted bw: ``replies`` maps the bw subcommand to a reply or a list of replies."""

    replies: dict[str, Reply | list[Reply] | Callable[[Call], Reply]] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    stops: bool = False  # like ShRunner: a call whose ``complete`` accepts its stdout is "stopped"

    def __call__(
        self,
        argv: Sequence[str],
        *,
        stdin: bytes | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float = 120.0,
        ok_codes: Collection[int] = (0,),
        secret_output: bool = False,
        complete: Callable[[bytearray], bool] | None = None,
    ) -> CommandResult:
        call = Call(tuple(argv), dict(env or {}), secret_output, complete)
        self.calls.append(call)
        name = argv[1] if argv[1] not in ("list", "config") else f"{argv[1]} {argv[2]}"
        reply = self.replies.get(name, (0, "", ""))
        if isinstance(reply, list):
            reply = reply.pop(0)
        elif callable(reply):
            reply = reply(call)
        code, out, err = reply
        assert code in ok_codes
        stopped = self.stops and complete is not None and complete(bytearray(out.encode()))
        return CommandResult(tuple(argv), 0 if stopped else code, out.encode(), err.encode(), stopped)

    def names(self) -> list[str]:
        return [" ".join(c.argv[1:3]) if c.argv[1] in ("list", "config") else c.argv[1] for c in self.calls]


def status(state: str = "locked", url: str | None = URL) -> Reply:
    return (0, json.dumps({"serverUrl": url, "status": state, "userEmail": "op@example.org"}), "")


def make(tmp_path: Path, runner: FakeRunner, ca: Path | None = None) -> Bitwarden:
    config = BwConfig("/opt/bw", tmp_path / "bw", URL, ORG, ca, 30.0)
    return Bitwarden(runner, config)


def happy() -> FakeRunner:
    return FakeRunner(
        {
            "status": status(),
            "unlock": (0, SESSION + "\n", ""),
            "list collections": (0, json.dumps([{"id": "c1", "name": "acme", "organizationId": ORG}]), ""),
            "list items": (
                0,
                json.dumps(
                    [
                        {
                            "id": "i1",
                            "name": "env",
                            "collectionIds": ["c1"],
                            "notes": "A=1",
                            "fields": [
                                {"name": "B", "value": "2", "type": 1},
                                {"name": "U", "value": None, "type": 3, "linkedId": 100},
                            ],
                            "login": {"username": "bob", "password": "pw"},
                        }
                    ]
                ),
                "",
            ),
        }
    )


def test_snapshot_is_one_unlock_one_sync_one_listing_then_lock(tmp_path: Path) -> None:
    runner = happy()
    snap = make(tmp_path, runner, ca=tmp_path / "ca.pem").snapshot(CREDS)
    assert runner.names() == ["status", "unlock", "sync", "list collections", "list items", "lock"]
    assert [c.argv for c in runner.calls[1:5]] == [
        ("/opt/bw", "unlock", "--passwordenv", "BW_PASSWORD", "--raw"),
        ("/opt/bw", "sync"),
        ("/opt/bw", "list", "collections", "--organizationid", ORG),
        ("/opt/bw", "list", "items", "--organizationid", ORG),
    ]
    assert snap.bw_calls == 6
    assert [(c.id, c.name) for c in snap.collections] == [("c1", "acme")]
    item = snap.items[0]
    assert (item.notes, item.fields, item.collection_ids) == ("A=1", (("B", "2"), ("U", "bob")), ("c1",))


def test_environment_and_secrets_never_in_argv(tmp_path: Path) -> None:
    runner = happy()
    runner.replies["status"] = [status("unauthenticated"), status("locked")]
    make(tmp_path, runner, ca=tmp_path / "ca.pem").snapshot(CREDS)
    for call in runner.calls:
        assert call.secret_output
        assert call.env["BW_NOINTERACTION"] == "true"
        assert call.env["BITWARDENCLI_APPDATA_DIR"] == str(tmp_path / "bw")
        assert call.env["NODE_EXTRA_CA_CERTS"] == str(tmp_path / "ca.pem")
        joined = " ".join(call.argv)
        for secret in (*CREDS.values(), SESSION):
            assert secret not in joined
    by_name = {c.argv[1]: c for c in runner.calls}
    assert by_name["login"].argv == ("/opt/bw", "login", "--apikey")
    assert by_name["login"].env["BW_CLIENTID"] == "user.abc"
    assert by_name["login"].env["BW_CLIENTSECRET"] == "client-secret-xyz"
    assert by_name["unlock"].env["BW_PASSWORD"] == "master pw 42"
    assert "BW_SESSION" not in by_name["unlock"].env and "BW_SESSION" not in by_name["lock"].env
    assert "sync" not in by_name  # bw login synced in full (login.command.ts)
    for call in runner.calls[runner.names().index("unlock") + 1 : -1]:  # the session's calls
        assert call.env["BW_SESSION"] == SESSION
        assert "BW_PASSWORD" not in call.env and "BW_CLIENTSECRET" not in call.env
    runner = happy()
    make(tmp_path, runner).snapshot(CREDS)
    (sync,) = (c for c in runner.calls if c.argv[1] == "sync")
    assert sync.env["BW_SESSION"] == SESSION
    assert "BW_PASSWORD" not in sync.env and "BW_CLIENTSECRET" not in sync.env
    assert stat_mode(tmp_path / "bw") == 0o700


def stat_mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_fresh_data_dir_is_pointed_at_the_server_before_login(tmp_path: Path) -> None:
    runner = happy()
    runner.replies["status"] = [status("unauthenticated", None), status("unauthenticated"), status("locked")]
    make(tmp_path, runner).snapshot(CREDS)
    assert runner.names()[:5] == ["status", "config server", "status", "login", "unlock"]
    assert runner.calls[1].argv == ("/opt/bw", "config", "server", URL)


def test_server_mismatch_refuses_before_any_credential_is_sent(tmp_path: Path) -> None:
    runner = happy()
    runner.replies["status"] = status("locked", "https://evil.example.net")
    with pytest.raises(SecretsError, match="refusing to send credentials"):
        make(tmp_path, runner).snapshot(CREDS)
    assert runner.names() == ["status"]


@pytest.mark.parametrize(
    ("given", "normal"),
    [
        ("HTTPS://Vault.Example.ORG:443/", "https://vault.example.org"),
        ("https://vault.example.org/path//", "https://vault.example.org/path"),
        ("https://127.0.0.1:8443", "https://127.0.0.1:8443"),
    ],
)
def test_normalise_url(given: str, normal: str) -> None:
    assert normalise_url(given) == normal


def test_user_key_id_first_unlock_failure_is_retried_once(tmp_path: Path) -> None:
    runner = happy()
    backfill = (1, "", "Uncaught KeyIdBackfillError: API call failed during user key id backfill")
    runner.replies["unlock"] = [backfill, (0, SESSION, "")]
    make(tmp_path, runner).snapshot(CREDS)
    assert runner.names().count("unlock") == 2


def test_wrong_master_password_is_vault_locked_and_still_locks(tmp_path: Path) -> None:
    runner = happy()
    runner.replies["unlock"] = (1, "", "Cryptography error, The decryption operation failed")
    with pytest.raises(VaultLocked) as info:
        make(tmp_path, runner).snapshot(CREDS)
    assert str(info.value) == "bw unlock failed: wrong master password: bw could not decrypt the vault key"
    assert runner.names() == ["status", "unlock", "lock"]


def test_failure_after_unlock_still_locks_and_hides_output(tmp_path: Path) -> None:
    runner = happy()
    runner.replies["sync"] = (1, "leaked-secret-stdout", "Syncing failed: FetchError: ... ECONNREFUSED 127.0.0.1")
    with pytest.raises(SecretsError) as info:
        make(tmp_path, runner).snapshot(CREDS)
    assert str(info.value) == "bw sync failed: cannot reach the vault server (connection refused)"
    assert info.value.__cause__ is None and info.value.__context__ is None
    assert runner.names()[-1] == "lock"


def test_wrong_client_secret(tmp_path: Path) -> None:
    runner = happy()
    runner.replies["status"] = status("unauthenticated")
    runner.replies["login"] = (1, "", "client_id or client_secret is incorrect. Try again.")
    with pytest.raises(SecretsError, match="wrong client id or secret"):
        make(tmp_path, runner).snapshot(CREDS)
    assert "unlock" not in runner.names()


def test_garbage_output_is_an_error_without_the_output(tmp_path: Path) -> None:
    runner = happy()
    runner.replies["list items"] = (0, "<html>secret-ish</html>", "")
    with pytest.raises(SecretsError) as info:
        make(tmp_path, runner).snapshot(CREDS)
    assert str(info.value) == "bw list items printed something that is not JSON"


def test_unlock_that_prints_nothing_is_not_success(tmp_path: Path) -> None:
    runner = happy()
    runner.replies["unlock"] = (0, "", "")
    with pytest.raises(VaultLocked, match="no session key"):
        make(tmp_path, runner).snapshot(CREDS)


def test_lock_serialises_threads(tmp_path: Path) -> None:
    inside = 0
    most = 0
    guard = threading.Lock()

    def slow_sync(call: Call) -> Reply:
        nonlocal inside, most
        with guard:
            inside += 1
            most = max(most, inside)
        threading.Event().wait(0.05)
        with guard:
            inside -= 1
        return (0, "", "")

    runner = happy()
    runner.replies["sync"] = slow_sync
    bw = make(tmp_path, runner)
    threads = [threading.Thread(target=bw.snapshot, args=(CREDS,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most == 1 and runner.names().count("sync") == 4


def test_login_logs_out_and_reconfigures_for_vault_login(tmp_path: Path) -> None:
    runner = happy()
    runner.replies["status"] = [
        status("locked", "https://old.example.org"),
        status("unauthenticated", "https://old.example.org"),
        status("unauthenticated"),
    ]
    make(tmp_path, runner).login(CREDS)
    assert runner.names() == [
        "status",
        "logout",
        "status",
        "config server",
        "status",
        "login",
        "unlock",
        "list collections",  # no sync: bw login synced in full
        "lock",
    ]


GUID_A = "0b0c0d0e-0000-4000-8000-00000000000a"
GUID_B = "0b0c0d0e-0000-4000-8000-00000000000b"


def _item(item_id: str, *collections: str) -> dict[str, object]:
    return {"id": item_id, "name": item_id, "collectionIds": list(collections), "notes": "A=1", "fields": []}


def _two_collections() -> FakeRunner:
    runner = happy()
    runner.replies["list collections"] = (
        0,
        json.dumps([{"id": GUID_A, "name": "acme"}, {"id": GUID_B, "name": "beta"}]),
        "",
    )
    both = [_item("ia", GUID_A), _item("ib", GUID_B), _item("iab", GUID_A, GUID_B), _item("ix", "other")]

    def items(call: Call) -> Reply:
        if "--collectionid" in call.argv:  # bw's own filter (list.command.ts, listCiphers)
            wanted = call.argv[call.argv.index("--collectionid") + 1]
            return (0, json.dumps([i for i in both if wanted in i["collectionIds"]]), "")  # type: ignore[operator]
        return (0, json.dumps(both), "")

    runner.replies["list items"] = items
    return runner


def test_one_collection_is_listed_alone_and_only_its_items_come_back(tmp_path: Path) -> None:
    """Issue 9: one tenant's provisioning listed (and kept) every item of the organization.
    bw ORs --organizationid and --collectionid, so the collection is asked for alone."""
    runner = _two_collections()
    seen: list[tuple[str, ...]] = []
    snap = make(tmp_path, runner).snapshot(CREDS, lambda cols: (seen.append(tuple(c.name for c in cols)), [GUID_A])[1])
    assert seen == [("acme", "beta")]
    assert [c.argv for c in runner.calls if c.argv[1:3] == ("list", "items")] == [
        ("/opt/bw", "list", "items", "--collectionid", GUID_A)
    ]
    assert sorted(i.id for i in snap.items) == ["ia", "iab"]


def test_several_collections_are_one_listing_keeping_only_theirs(tmp_path: Path) -> None:
    runner = _two_collections()
    snap = make(tmp_path, runner).snapshot(CREDS, lambda cols: [GUID_A, GUID_B])
    assert [c.argv for c in runner.calls if c.argv[1:3] == ("list", "items")] == [
        ("/opt/bw", "list", "items", "--organizationid", ORG)
    ]
    assert sorted(i.id for i in snap.items) == ["ia", "iab", "ib"]


def test_no_collection_wanted_lists_no_items_and_a_non_guid_is_refused(tmp_path: Path) -> None:
    runner = _two_collections()
    snap = make(tmp_path, runner).snapshot(CREDS, lambda cols: [])
    assert snap.items == () and "list items" not in runner.names() and runner.names()[-1] == "lock"
    runner = _two_collections()
    with pytest.raises(SecretsError, match="'notnull' is not a GUID"):
        make(tmp_path, runner).snapshot(CREDS, lambda cols: ["notnull"])  # bw: "in any collection"
    assert runner.names()[-1] == "lock"


def test_a_login_is_not_followed_by_a_sync_but_a_held_login_syncs(tmp_path: Path) -> None:
    """bw login --apikey syncs in full before it answers (apps/cli/src/auth/commands/
    login.command.ts, fullSync(true)): the sync after it was 2-3 s of a fresh provisioning."""
    runner = happy()
    runner.replies["status"] = status("unauthenticated")
    make(tmp_path, runner).snapshot(CREDS)
    assert runner.names() == ["status", "login", "unlock", "list collections", "list items", "lock"]
    runner = happy()
    make(tmp_path, runner).snapshot(CREDS)
    assert runner.names() == ["status", "unlock", "sync", "list collections", "list items", "lock"]


def test_only_read_only_calls_may_end_at_their_answer(tmp_path: Path) -> None:
    """status and list may be ended once their JSON is whole (they write no state after it);
    login, unlock, sync, lock, logout and config always run to their end."""
    runner = happy()
    runner.replies["status"] = [
        status("locked", "https://old.example.org"),
        status("unauthenticated", "https://old.example.org"),
        status("unauthenticated"),
    ]
    make(tmp_path, runner).login(CREDS)
    make(tmp_path, happy_into(runner)).snapshot(CREDS)
    ends = {(" ".join(c.argv[1:3]) if c.argv[1] == "list" else c.argv[1], c.complete is not None) for c in runner.calls}
    assert ends == {
        ("status", True),
        ("list collections", True),
        ("list items", True),
        ("logout", False),
        ("config", False),
        ("login", False),
        ("unlock", False),
        ("sync", False),
        ("lock", False),
    }


def happy_into(runner: FakeRunner) -> FakeRunner:
    runner.replies.update(happy().replies)
    return runner


def test_a_stopped_read_drops_the_bw_lock_it_may_have_left(tmp_path: Path) -> None:
    """bw reads data.json under a lock directory (data.json.lock, proper-lockfile) also after it
    has printed its answer: a read killed then leaves it, and the next bw waits for it to go
    stale (10 s) or fails.  We hold colibri.lock, so it can only be the killed bw's."""
    left = tmp_path / "bw" / "data.json.lock"
    runner = happy()
    runner.stops = True
    removed: list[bool] = []

    def locking_status(call: Call) -> Reply:
        left.mkdir(parents=True, exist_ok=True)  # the killed bw's leftover
        return status()

    def sync(call: Call) -> Reply:
        removed.append(not left.exists())
        return (0, "", "")

    runner.replies["status"] = locking_status
    runner.replies["sync"] = sync
    snap = make(tmp_path, runner).snapshot(CREDS)
    assert removed == [True] and not left.exists() and snap.items
    runner = happy()  # a call that ran to its end leaves bw's directory alone
    left.mkdir()
    make(tmp_path, runner).snapshot(CREDS)
    assert left.exists()


@pytest.mark.parametrize(
    ("out", "whole"),
    [
        (b"[]", True),
        (b'{"a": [1, {"b": "]"}]}', True),
        (b'[{"a": "]"}, 2]\n ', True),
        (b'[{"a": "]"}', False),
        (b'[{"a": "]"},', False),
        (b'{"a": "}"', False),
        (b"", False),
        (b"Your vault is locked.", False),
        (b"[1, 2]x", False),
        (b"\xff]", False),
    ],
)
def test_json_complete(out: bytes, whole: bool) -> None:
    assert json_complete(bytearray(out)) is whole


def _bw_state(tmp_path: Path, text: str = '{"stateVersion": 70}') -> Path:
    data = tmp_path / "bw" / "data.json"
    data.parent.mkdir(mode=0o700, exist_ok=True)
    data.write_text(text)
    return data


def test_a_state_the_last_lock_left_skips_status_until_anything_changes(tmp_path: Path) -> None:
    """bw status is one bw process (2-3 s) of every provisioning; when data.json is byte for
    byte what the last successful lock left, bw is logged in to vault_url and locked."""
    data = _bw_state(tmp_path)
    first = happy()
    make(tmp_path, first).snapshot(CREDS)
    assert first.names()[0] == "status"
    state = tmp_path / "bw" / "colibri.state"
    assert stat_mode(state) == 0o600
    assert json.loads(state.read_text()).keys() == {"server", "data_sha256"}
    for secret in (*CREDS.values(), SESSION):
        assert secret not in state.read_text()
    again = happy()
    make(tmp_path, again).snapshot(CREDS)
    assert again.names() == ["unlock", "sync", "list collections", "list items", "lock"]

    data.write_text('{"stateVersion": 71}')  # bw's state changed (by hand, a killed operation)
    changed = happy()
    make(tmp_path, changed).snapshot(CREDS)
    assert changed.names()[0] == "status"

    elsewhere = happy()  # vault_url changed: bw is asked, and refuses before any credential
    elsewhere.replies["status"] = status("locked", URL)
    config = BwConfig("/opt/bw", tmp_path / "bw", "https://other.example.org", ORG, None, 30.0)
    with pytest.raises(SecretsError, match="refusing to send credentials"):
        Bitwarden(elsewhere, config).snapshot(CREDS)
    assert elsewhere.names() == ["status"]


def test_a_failed_lock_or_a_vault_login_always_asks_bw(tmp_path: Path) -> None:
    _bw_state(tmp_path)
    failed = happy()
    failed.replies["lock"] = (1, "", "Lock failed")
    make(tmp_path, failed).snapshot(CREDS)
    assert not (tmp_path / "bw" / "colibri.state").exists()
    asked = happy()
    make(tmp_path, asked).snapshot(CREDS)
    assert asked.names()[0] == "status"  # and this lock succeeded: the state is remembered
    login = happy()
    login.replies["status"] = [status("locked"), status("unauthenticated")]
    make(tmp_path, login).login(CREDS)
    assert login.names()[:3] == ["status", "logout", "status"]
