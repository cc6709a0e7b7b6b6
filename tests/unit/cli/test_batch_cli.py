"""register-tenant and remove-tenant over several tenants (issue 9): each tenant on its own, one
summary line, per-tenant outcomes in --json, the exit code of the worst failure, --from-file."""

import json
from pathlib import Path

import pytest

from colibri.services.tenants import MAX_BATCH, MAX_LIST_BYTES
from tests.conftest import Invoke


def statuses(invoke: Invoke) -> dict[str, str]:
    code, out, _ = invoke("list-tenants", "--status", "registered", "--json")
    assert code == 0
    return {t["tenant_id"]: t["status"] for t in json.loads(out)["data"]}


def test_register_several_one_summary_progress_and_the_worst_exit_code(invoke: Invoke) -> None:
    assert invoke("register-tenant", "acme")[0] == 0
    code, out, err = invoke("register-tenant", "acme", "beta", "b@d", "gamma", "beta")
    assert code == 7  # b@d: InvalidTenantId; the others are registered all the same
    assert out == "1 unchanged, 2 registered, 1 failed (of 4 tenants)\n"
    assert err.splitlines() == [
        "[1/4] acme: unchanged: already registered (no change)",
        "[2/4] beta: registered",
        "[3/4] b@d: failed: invalid tenant id 'b@d': use ASCII letters, digits, '-' and '_', "
        "starting with a letter or digit",
        "[4/4] gamma: registered",
        "colibri: 1 of 4 registrations failed: b@d",
    ]
    assert statuses(invoke) == {"acme": "registered", "beta": "registered", "gamma": "registered"}


def test_register_several_json_reports_each_tenant_and_says_it_failed(invoke: Invoke) -> None:
    invoke("register-tenant", "acme", "--collection", "other")
    code, out, err = invoke("register-tenant", "acme", "delta", "--json")
    assert code == 5 and err == ""  # acme: registered with other fields (TenantExists)
    doc = json.loads(out)
    assert doc["ok"] is False
    assert doc["error"] == {"type": "PartialFailure", "code": 5, "message": "1 of 2 registrations failed: acme"}
    assert [(t["tenant_id"], t["outcome"], t.get("error")) for t in doc["data"]] == [
        ("acme", "failed", {"type": "TenantExists", "code": 5}),
        ("delta", "registered", None),
    ]
    code, out, _ = invoke("register-tenant", "delta", "echo", "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["ok"] is True and [t["outcome"] for t in doc["data"]] == ["unchanged", "registered"]


def test_a_shared_collection_is_refused_for_several_tenants(invoke: Invoke) -> None:
    code, _, err = invoke("register-tenant", "acme", "beta", "--collection", "shared")
    assert code == 2 and "with several tenants --collection can only be ''" in err
    assert statuses(invoke) == {}
    code, _, _ = invoke("register-tenant", "acme", "beta", "--collection", "")
    assert code == 0
    _, out, _ = invoke("show-tenant", "beta", "--json")
    assert json.loads(out)["data"]["collection_name"] is None


def test_from_file_and_stdin(invoke: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    listing = tmp_path / "tenants.txt"
    listing.write_text("# onboarding wave 1\n  acme  \n\nbeta\n")
    assert invoke("register-tenant", "zulu", "--from-file", str(listing))[0] == 0
    assert set(statuses(invoke)) == {"acme", "beta", "zulu"}
    import io
    import sys

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"gamma\ndelta\n")))
    code, out, _ = invoke("register-tenant", "--from-file", "-")
    assert (code, out) == (0, "2 registered (of 2 tenants)\n")
    code, _, err = invoke("remove-tenant", "--from-file", str(listing), "ghost")
    assert code == 4 and err.endswith("colibri: 1 of 3 removals failed: ghost\n")
    assert set(statuses(invoke)) == {"delta", "gamma", "zulu"}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"x" * (MAX_LIST_BYTES + 1), "more than 1048576 bytes"),
        (b"acme\n" + b"y" * 300 + b"\n", "line 2 is longer than 256 characters"),
        (b"acme\n\xff\n", "is not UTF-8 text"),
        (b"acme\0beta\n", "holds a NUL byte"),
        ("".join(f"t{i}\n" for i in range(MAX_BATCH + 1)).encode(), "10001 tenants; at most 10000"),
    ],
    ids=["too-big", "long-line", "not-utf8", "nul", "too-many"],
)
def test_a_file_that_is_no_list_of_ids_is_refused_before_anything(
    invoke: Invoke, tmp_path: Path, content: bytes, message: str
) -> None:
    listing = tmp_path / "tenants.txt"
    listing.write_bytes(content)
    code, _, err = invoke("register-tenant", "--from-file", str(listing))
    assert code == 7 and message in err and err.count("\n") == 1
    assert statuses(invoke) == {}


def test_a_missing_file_and_no_tenant_at_all(invoke: Invoke, tmp_path: Path) -> None:
    code, _, err = invoke("register-tenant", "--from-file", str(tmp_path / "nope"))
    assert (code, err) == (7, f"colibri: --from-file {tmp_path / 'nope'}: cannot read it: No such file or directory\n")
    (tmp_path / "empty").write_text("# nobody yet\n")
    assert invoke("register-tenant", "--from-file", str(tmp_path / "empty"))[0] == 2
    assert invoke("register-tenant")[0] == 2
    assert invoke("destroy-agent", "--yes")[0] == 2


def test_remove_several_json(invoke: Invoke) -> None:
    invoke("register-tenant", "acme", "beta")
    code, out, _ = invoke("remove-tenant", "acme", "beta", "--json")
    assert code == 0
    assert [(t["tenant_id"], t["outcome"]) for t in json.loads(out)["data"]] == [
        ("acme", "removed"),
        ("beta", "removed"),
    ]
    assert statuses(invoke) == {}


def test_destroying_several_asks_once_and_stdin_ids_need_yes(invoke: Invoke, monkeypatch: pytest.MonkeyPatch) -> None:
    import io
    import sys

    invoke("register-tenant", "acme", "beta")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"acme\nbeta\n")))
    code, _, err = invoke("remove-tenant", "--from-file", "-", "--destroy-jail")
    assert code == 2 and "nothing can answer: add --yes" in err
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"n\n")))
    code, out, _ = invoke("remove-tenant", "acme", "beta", "acme", "--destroy-jail")
    assert code == 1 and "Destroy the jails of 2 tenants (acme, beta) and remove each tenant?" in out
    assert set(statuses(invoke)) == {"acme", "beta"}


def interrupt_at(monkeypatch: pytest.MonkeyPatch, method: str, call: int) -> list[str]:
    """TenantService.<method> raises KeyboardInterrupt (a Ctrl-C) at its ``call``-th call."""
    from colibri.services.tenants import TenantService

    real = getattr(TenantService, method)
    calls: list[str] = []

    def wrapped(self: TenantService, tenant_id: str, *args: object, **kwargs: object) -> object:
        calls.append(tenant_id)
        if len(calls) == call:
            raise KeyboardInterrupt
        return real(self, tenant_id, *args, **kwargs)

    monkeypatch.setattr(TenantService, method, wrapped)
    return calls


def test_ctrl_c_in_a_batch_still_says_what_was_done(invoke: Invoke, monkeypatch: pytest.MonkeyPatch) -> None:
    """Review 9, F8: a Ctrl-C at the 2nd of 3 tenants ended the command with exit 130 and not one
    byte of output.  The tenant in hand is "interrupted", the rest "not run", the document is
    printed, exit 130."""
    calls = interrupt_at(monkeypatch, "register", 2)
    code, out, err = invoke("register-tenant", "ant", "bee", "cow", "--json")
    assert (code, err, calls) == (130, "", ["ant", "bee"])
    document = json.loads(out)
    assert document["ok"] is False
    assert document["error"] == {
        "type": "Interrupted", "code": 130,
        "message": "registrations interrupted (Ctrl-C) at tenant bee: 1 done, 1 not run",
    }  # fmt: skip
    assert document["data"] == [
        {"tenant_id": "ant", "outcome": "registered", "message": ""},
        {"tenant_id": "bee", "outcome": "interrupted", "message": "Ctrl-C while it was in hand: check it",
         "error": {"type": "Interrupted", "code": 130}},
        {"tenant_id": "cow", "outcome": "not run", "message": ""},
    ]  # fmt: skip
    assert statuses(invoke) == {"ant": "registered"}


def test_ctrl_c_in_a_batch_without_json_prints_the_summary(invoke: Invoke, monkeypatch: pytest.MonkeyPatch) -> None:
    assert invoke("register-tenant", "ant", "bee", "cow", "dog", "b@d")[0] == 7
    interrupt_at(monkeypatch, "remove", 3)
    code, out, err = invoke("remove-tenant", "ant", "b@d", "bee", "cow", "dog")
    assert code == 130
    assert out == "1 removed, 1 failed, 1 interrupted, 2 not run (of 5 tenants)\n"
    assert err.splitlines()[1:] == [
        "[2/5] b@d: failed: tenant not found: b@d",
        "[3/5] bee: interrupted: Ctrl-C while it was in hand: check it",
        "colibri: removals interrupted (Ctrl-C) at tenant bee: 1 done, 1 failed, 2 not run",
    ]
    assert set(statuses(invoke)) == {"bee", "cow", "dog"}


def test_ctrl_c_in_a_destroy_batch(invoke: Invoke, monkeypatch: pytest.MonkeyPatch) -> None:
    invoke("register-tenant", "ant", "bee")
    interrupt_at(monkeypatch, "show", 2)  # destroy-agent looks each tenant up first
    code, out, _ = invoke("destroy-agent", "ant", "bee", "--yes", "--json")
    assert code == 130
    document = json.loads(out)
    assert document["error"]["type"] == "Interrupted"
    assert [(t["tenant_id"], t["outcome"]) for t in document["data"]] == [("ant", "unchanged"), ("bee", "interrupted")]


def test_ctrl_c_between_two_tenants_leaves_none_unreported() -> None:
    """A Ctrl-C while the progress of one tenant is shown: that one is done, the rest not run,
    and the batch still ends Interrupted (130), not as a success."""
    from colibri.errors import Interrupted
    from colibri.services.tenants import BatchItem, batch_failure, batch_summary, run_batch

    def progress(number: int, total: int, item: BatchItem) -> None:
        if number == 1:
            raise KeyboardInterrupt

    items = run_batch(["ant", "bee", "cow"], lambda t: ("registered", ""), progress)
    assert [(i.tenant_id, i.outcome) for i in items] == [("ant", "registered"), ("bee", "not run"), ("cow", "not run")]
    failure = batch_failure(items, "registrations")
    assert isinstance(failure, Interrupted) and failure.exit_code == 130
    assert failure.message == "registrations interrupted (Ctrl-C) at tenant bee: 1 done, 2 not run"
    assert batch_summary(items) == "1 registered, 2 not run (of 3 tenants)"


def test_ctrl_c_in_provision_all_prints_the_report(invoke: Invoke, monkeypatch: pytest.MonkeyPatch) -> None:
    """provision --all after a Ctrl-C (the service's side: tests/unit/test_secrets_service.py):
    the per-tenant lines or the JSON document, then exit 130."""
    from colibri.services.secrets import SecretsService
    from colibri.services.secrets_report import ProvisionResult, interrupted

    report = interrupted(["ant", "bee", "cow"], [ProvisionResult("ant", "written", message="2 keys")])
    monkeypatch.setattr(SecretsService, "provision_all", lambda self: report)
    code, out, _ = invoke("provision", "--all", "--json")
    document = json.loads(out)
    assert code == 130 and document["ok"] is False
    assert document["error"]["message"] == "provisioning interrupted (Ctrl-C) at tenant bee: 1 done, 1 not run"
    assert [t["outcome"] for t in document["data"]] == ["written", "interrupted", "not run"]
    code, out, err = invoke("provision", "--all")
    assert code == 130
    assert out.splitlines() == ["ant: written: 2 keys", "bee: interrupted: Ctrl-C while it was in hand: check it",
                                "cow: not run: the Ctrl-C came before its turn"]  # fmt: skip
    assert err == "colibri: provisioning interrupted (Ctrl-C) at tenant bee: 1 done, 1 not run\n"
