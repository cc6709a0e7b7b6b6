"""Seeding a vault from a JSON document (used by ``python -m tests.servers.vaultwarden --seed``).

Format::

    {
      "users": [{"email": "a@example.com", "password": "pw", "kdf_iterations": 5000,
                 "client_secret": "optional, random when absent"}],
      "organizations": [{
        "name": "Acme",
        "members": {"a@example.com": "owner", "b@example.com": "user"},
        "collections": [{
          "name": "tenant-a",
          "items": [{"name": "env", "notes": "...",
                     "fields": [{"name": "DB_URL", "value": "...", "hidden": false}],
                     "login": {"username": "u", "password": "p", "uris": []}}]
        }]
      }]
    }

``login`` is optional: without it an item is a secure note.
"""

from __future__ import annotations

from typing import Any

from .store import Field, FieldType, Login, Role, Vault


def _field(spec: dict[str, Any]) -> Field:
    kind = FieldType.HIDDEN if spec.get("hidden") else FieldType.TEXT
    return Field(str(spec["name"]), str(spec.get("value", "")), kind)


def load(vault: Vault, doc: dict[str, Any]) -> dict[str, Any]:
    """Create everything in ``doc``; return the generated ids and API keys."""
    summary: dict[str, Any] = {"users": [], "organizations": []}
    for spec in doc.get("users", []):
        user = vault.add_user(
            spec["email"],
            spec["password"],
            kdf_iterations=int(spec.get("kdf_iterations", 5000)),
            client_secret=spec.get("client_secret"),
        )
        summary["users"].append(
            {
                "email": user.email,
                "id": user.id,
                "client_id": user.client_id,
                "client_secret": user.client_secret,
            }
        )
    for spec in doc.get("organizations", []):
        summary["organizations"].append(_load_org(vault, spec))
    return summary


def _load_org(vault: Vault, spec: dict[str, Any]) -> dict[str, Any]:
    org = vault.add_org(spec["name"])
    for email, role in spec.get("members", {}).items():
        user = vault.user_by_email(email)
        if user is None:
            raise ValueError(f"organization {spec['name']!r}: unknown member {email}")
        vault.add_member(org, user, Role[role.upper()])
    cols = []
    for col_spec in spec.get("collections", []):
        col = vault.add_collection(org, col_spec["name"])
        for item in col_spec.get("items", []):
            login = Login(**item["login"]) if "login" in item else None
            fields = [_field(f) for f in item.get("fields", [])]
            vault.add_item(col, item["name"], notes=item.get("notes"), fields=fields, login=login)
        cols.append({"name": col.name, "id": col.id})
    return {"name": org.name, "id": org.id, "collections": cols}
