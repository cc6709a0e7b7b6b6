"""``colibri hosts`` through the real main path (no connection: add, list, show, remove; check's
refusals before any SSH).  The SSH side is tests/integration/test_hosts_ssh.py, on the rig."""

import json
import time

import pytest
from sqlalchemy import text

from colibri.settings import Settings
from colibri.store.db import Store
from tests.conftest import Invoke

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ4jS2T5Jm3cD3XqoP2i8VnR8nJb3TPO6lS0bYl5Y7+y"


def test_add_list_show_remove(invoke: Invoke) -> None:
    code, out, err = invoke("hosts", "add", "domedog", "--ssh", "root@192.0.2.20:2222", "--host-key", KEY)
    assert (code, err) == (0, "")
    assert out == "host domedog: enrolled (root@192.0.2.20:2222); check it: colibri hosts check domedog\n"
    code, out, _ = invoke("hosts")
    assert code == 0
    assert out.splitlines()[0].split() == ["HOST", "SSH", "LIVENESS", "BACKEND", "VERSION", "TENANTS", "CHECKED"]
    assert out.splitlines()[1].split() == ["domedog", "root@192.0.2.20:2222", "unknown", "-", "-", "0", "-"]
    code, out, _ = invoke("hosts", "list", "--json")
    [host] = json.loads(out)["data"]
    assert (host["name"], host["command"], host["tenants"]) == ("domedog", "colibri", 0)
    assert host["host_keys"][0]["fingerprint"].startswith("SHA256:")
    code, out, _ = invoke("hosts", "show", "domedog")
    assert code == 0 and "host_keys         ssh-ed25519 SHA256:" in out
    assert invoke("hosts", "remove", "domedog")[:2] == (0, "host domedog: removed\n")
    assert invoke("hosts", "--json")[1].count("domedog") == 0


def test_refusals_have_their_exit_codes(invoke: Invoke) -> None:
    assert invoke("hosts", "add", "x_y", "--ssh", "root@h", "--host-key", KEY)[0] == 7
    assert invoke("hosts", "add", "x", "--ssh", "root@h")[0] == 7  # no key: no trust on first use
    assert invoke("hosts", "add", "x", "--ssh", "h", "--host-key", KEY)[0] == 7
    code, _, err = invoke("hosts", "add", "x", "--ssh", "root@h", "--host-key", "ssh-ed25519 \x1b[31mAAAA")
    assert code == 7 and "\x1b" not in err
    code, out, _ = invoke("hosts", "check", "ghost", "--json")
    assert code == 4 and json.loads(out)["error"] == {
        "type": "HostNotFound",
        "code": 4,
        "message": "host not found: ghost",
    }
    assert invoke("hosts", "show", "ghost")[0] == 4


def test_version_json_reports_the_backend(invoke: Invoke) -> None:
    code, out, _ = invoke("version", "--json")
    data = json.loads(out)["data"]
    assert code == 0 and {"version", "python", "backend", "programs", "missing", "backend_ready"} <= set(data)


def test_liveness_uses_the_hive_s_lease_grace(invoke: Invoke, monkeypatch: pytest.MonkeyPatch) -> None:
    """`colibri hosts` calls a host lost when its daemons do: past its lease + ``host_lease_grace``
    (the setting), not a grace of its own (it said "stale" for 30 s after the daemons had already
    marked the host's agents lost and re-queued their tasks)."""
    assert invoke("hosts", "add", "domedog", "--ssh", "root@192.0.2.20", "--host-key", KEY)[0] == 0
    store = Store(Settings().database)
    try:
        with store.connect() as conn:  # its daemon's lease ran out 5 s ago
            conn.execute(text("UPDATE hosts SET lease_expires_at = :t"), {"t": time.time() - 5})
            conn.commit()
    finally:
        store.close()
    monkeypatch.setenv("COLIBRI_HOST_LEASE_GRACE", "2")
    [host] = json.loads(invoke("hosts", "--json")[1])["data"]
    assert host["liveness"] == "lost"
    monkeypatch.setenv("COLIBRI_HOST_LEASE_GRACE", "60")
    [host] = json.loads(invoke("hosts", "--json")[1])["data"]
    assert host["liveness"] == "stale"
