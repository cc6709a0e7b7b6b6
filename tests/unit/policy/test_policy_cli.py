"""``colibri policy``: show, set (a child only narrows), global, decisions; --json; exit codes."""

import json

from colibri.audit import origin
from colibri.services.policy.service import ChildRequest, SpawnPolicyService
from colibri.settings import load_settings
from colibri.store.db import Store
from tests.conftest import Invoke


def test_set_show_global_and_decisions(invoke: Invoke) -> None:
    assert invoke("register-tenant", "queen", "--collection", "")[0] == 0
    code, out, _ = invoke("policy", "show", "queen", "--json")
    assert code == 0 and json.loads(out)["data"]["policy"] is None and json.loads(out)["data"]["enabled"] is False
    code, out, err = invoke("policy", "set", "queen", "--allow", "--max-children", "2", "--capabilities", "echo",
                            "--rate", "5/10m", "--json")  # fmt: skip
    assert code == 0, err
    shown = json.loads(out)["data"]
    assert shown["enabled"] and shown["policy"]["rate"] == "5/10m" and shown["policy"]["capabilities"] == ["echo"]
    assert invoke("policy", "set", "queen", "--rate", "10/w")[0] == 7
    assert invoke("policy", "set", "nobody", "--allow")[0] == 4
    store = Store(load_settings(None)[0].database)
    try:
        with origin.acting("tenant:queen", host="testhost"):
            service = SpawnPolicyService(store)
            granted = service.decide(ChildRequest("queen", "a1"), actor="agent:queen/a1")
            hostile = service.decide(ChildRequest("queen", "a\x1b]0;pwned\x07", ("shell",)), actor="agent:queen/x")
    finally:
        store.close()
    assert granted.allowed and hostile.rule == "capability"
    code, out, _ = invoke("policy", "decisions", "queen")
    assert code == 0 and "\x1b" not in out and "\x07" not in out
    rows = [line.split()[1:4] for line in out.splitlines()[1:]]
    assert rows == [
        ["policy.set", "-", "-"],
        ["policy.decide", "allow", "allow"],
        ["policy.decide", "deny", "capability"],
    ]
    code, out, _ = invoke("policy", "decisions", "queen", "--json")
    found = json.loads(out)["data"]
    assert [d["rule"] for d in found[1:]] == ["allow", "capability"] and found[1]["reservation"] == granted.reservation
    code, out, _ = invoke("policy", "show", "queen")
    assert code == 0 and str(granted.reservation) in out and "children       1" in out
    assert invoke("policy", "global", "--forbid")[1].startswith("self-spawn: FORBIDDEN")
    code, out, _ = invoke("policy", "global", "--json")
    assert json.loads(out)["data"]["forbid"] is True and json.loads(out)["data"]["changed_by"].startswith("operator:")
    code, out, _ = invoke("policy", "show", "queen", "--json")
    assert json.loads(out)["data"]["enabled"] is False


def test_a_child_policy_only_narrows(invoke: Invoke) -> None:
    for tenant in ("queen", "worker"):
        assert invoke("register-tenant", tenant, "--collection", "")[0] == 0
    store = Store(load_settings(None)[0].database)
    try:
        with store.engine.begin() as conn:
            conn.exec_driver_sql("UPDATE tenants SET parent = 'queen' WHERE tenant_id = 'worker'")
    finally:
        store.close()
    code, _, err = invoke("policy", "set", "worker", "--allow")
    assert code == 7 and "queen has no spawn policy" in err
    assert invoke("policy", "set", "queen", "--allow", "--max-depth", "2", "--skills", "mother")[0] == 0
    code, _, err = invoke("policy", "set", "worker", "--allow", "--skills", "mother,browser")
    assert code == 7 and "skills browser not allowed to the parent" in err
    code, out, err = invoke("policy", "set", "worker", "--allow", "--max-depth", "1", "--skills", "mother", "--json")
    assert code == 0, err
    shown = json.loads(out)["data"]
    assert shown["parent"] == "queen" and shown["depth"] == 1 and shown["effective"]["depth_limit"] == 2
