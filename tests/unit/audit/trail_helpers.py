"""Shared by the audit trail tests: record entries as the services do, export, read keys."""

import json
import os
from pathlib import Path

from colibri.adapters.audit_keys import KeyDir
from colibri.audit import origin
from colibri.audit.entry import Event
from colibri.store.audit import AuditRepo
from colibri.store.db import Store
from tests.conftest import Invoke


def record(url: str, host: str, count: int, start: int = 0, actor: str = "operator:uid=0") -> None:
    """``count`` state changes of ``host``, each its own transaction (as a service commits them)."""
    store = Store(url)
    try:
        with origin.acting(actor, host=host, vouch=keys(host).entry_key):
            for n in range(start, start + count):
                with store.session() as session:
                    AuditRepo(session).append(
                        Event("tenant.register", f"tenant:t{n}", tenant=f"t{n}", detail={"n": n, "note": "a\nb"})
                    )
    finally:
        store.close()


def keys(host: str) -> KeyDir:
    """``host``'s audit key dir as the tests lay them out: the CLI's host (COLIBRI_HOST) in
    COLIBRI_STATE_DIR/audit, another host in <tmp_path>/<host>/audit."""
    state = Path(os.environ["COLIBRI_STATE_DIR"])
    if host == os.environ.get("COLIBRI_HOST"):
        return KeyDir(state / "audit", host)
    return KeyDir(state.parent.parent / host / "audit", host)


def keys_of(invoke: Invoke) -> list[str]:
    code, out, err = invoke("audit", "keys", "--json")
    assert code == 0, err
    return [k["public_key"] for k in json.loads(out)["data"] if k["retired_at"] is None]


def export(invoke: Invoke, path: Path) -> dict[str, object]:
    code, out, err = invoke("audit", "export", str(path), "--json")
    assert code == 0, out + err
    data: dict[str, object] = json.loads(out)["data"]
    return data


def verify(invoke: Invoke, path: Path, keys: list[str]) -> tuple[int, str]:
    args = ["audit", "verify", str(path)]
    for key in keys:
        args += ["--key", key]
    code, out, err = invoke(*args)
    return code, out + err
