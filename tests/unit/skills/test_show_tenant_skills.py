"""show-tenant and list-tenants show a tenant's tier and its installed skills (issue 13)."""

import json

from colibri.settings import load_settings
from colibri.store.db import Store
from colibri.store.skills import Installed, SkillRepo
from tests.conftest import Invoke

MAIL = Installed("mail", "1.0.0", "sha256:" + "c" * 64, "first-party", ("mail.send",), "sha256:" + "d" * 64)
HOSTILE = Installed("web", "2.0.0", "sha256:" + "e" * 64, "community", ("web\x1b[2J",), "sha256:" + "f" * 64)


def test_show_tenant_lists_the_tier_and_the_installed_skills(invoke: Invoke) -> None:
    assert invoke("register-tenant", "acme", "--tier", "community")[0] == 0
    code, out, _ = invoke("show-tenant", "acme")
    assert code == 0 and "\ntier                paid" not in out and "skills (0 installed)\n" in out
    store = Store(load_settings(None)[0].database)
    with store.session() as session:
        SkillRepo(session).put("acme", MAIL)
        SkillRepo(session).put("acme", HOSTILE)
    store.close()
    code, out, _ = invoke("show-tenant", "acme")
    lines = out.splitlines()
    assert code == 0 and "community" in next(line for line in lines if line.startswith("tier"))
    at = lines.index("skills (2 installed):")
    assert lines[at + 1].split() == ["NAME", "VERSION", "SOURCE", "DIGEST", "CAPABILITIES", "INSTALLED"]
    assert lines[at + 2].split()[:5] == ["mail", "1.0.0", "first-party", MAIL.digest, "mail.send"]
    assert "\x1b" not in out and "web\\x1b[2J" in lines[at + 3]  # a skill's text never drives the terminal
    shown = json.loads(invoke("show-tenant", "acme", "--json")[1])["data"]
    assert shown["tier"] == "community"
    assert [(s["name"], s["source"], s["capabilities"]) for s in shown["skills"]] == [
        ("mail", "first-party", ["mail.send"]),
        ("web", "community", ["web\x1b[2J"]),
    ]
    listed = invoke("list-tenants")[1].splitlines()
    assert listed[1].split()[3:5] == ["community", "mail@1.0.0,web@2.0.0"]
