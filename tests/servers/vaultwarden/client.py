"""A minimal Python Bitwarden client: checks the server's crypto chain without the (slow) bw CLI.

It walks the same path bw does: master key -> stretched key -> user key -> RSA private key ->
org key -> collection names and cipher strings.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from . import crypto, tls
from .server import VaultwardenServer


@dataclass(frozen=True)
class HttpReply:
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def request(
    server: VaultwardenServer,
    method: str,
    path: str,
    *,
    json_body: Any = None,
    form: dict[str, str] | None = None,
    token: str | None = None,
) -> HttpReply:
    headers: dict[str, str] = {}
    data = None
    if json_body is not None:
        data, headers["Content-Type"] = json.dumps(json_body).encode(), "application/json"
    if form is not None:
        data, headers["Content-Type"] = urlencode(form).encode(), "application/x-www-form-urlencoded"
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(server.url + path, data=data, headers=headers, method=method)
    context = tls.client_context(server.ca_cert_path)
    try:
        with urllib.request.urlopen(req, context=context, timeout=10) as resp:
            return HttpReply(resp.status, resp.read())
    except urllib.error.HTTPError as err:
        with err:
            return HttpReply(err.code, err.read())


def api_key_form(client_id: str, client_secret: str) -> dict[str, str]:
    return {
        "grant_type": "client_credentials",
        "scope": "api",
        "client_id": client_id,
        "client_secret": client_secret,
        "deviceIdentifier": "00000000-0000-4000-8000-000000000000",
        "deviceName": "python",
        "deviceType": "8",
    }


def decrypt_vault(token_reply: dict[str, Any], sync: dict[str, Any], password: str) -> dict[str, Any]:
    """Decrypt a sync with the master password, as bw would: collections and items by name."""
    unlock = token_reply["UserDecryptionOptions"]["MasterPasswordUnlock"]
    master = crypto.master_key(password, unlock["Salt"], unlock["Kdf"]["Iterations"])
    user_key = crypto.SymmetricKey.from_bytes(crypto.decrypt(token_reply["Key"], crypto.stretch(master)))
    der = crypto.decrypt(token_reply["PrivateKey"], user_key)
    private_key = serialization.load_der_private_key(der, password=None)
    assert isinstance(private_key, rsa.RSAPrivateKey)
    org_keys = {
        o["id"]: crypto.SymmetricKey.from_bytes(crypto.rsa_unwrap(o["key"], private_key))
        for o in sync["profile"]["organizations"]
    }

    def dec(value: str | None, org_id: str) -> str | None:
        return None if value is None else crypto.decrypt_str(value, org_keys[org_id])

    collections = {dec(c["name"], c["organizationId"]): c for c in sync["collections"]}
    items = {
        dec(c["name"], c["organizationId"]): {
            "notes": dec(c["notes"], c["organizationId"]),
            "fields": {dec(f["name"], c["organizationId"]): dec(f["value"], c["organizationId"]) for f in c["fields"]},
            "collectionIds": c["collectionIds"],
        }
        for c in sync["ciphers"]
    }
    return {"collections": collections, "items": items}
