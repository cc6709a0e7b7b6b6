"""A Vaultwarden-compatible HTTPS test server with real Bitwarden crypto.

    server = start()                       # 127.0.0.1, ephemeral port, fresh self-signed cert
    alice = server.vault.add_user("alice@example.com", "master pw")   # PBKDF2 5000 by default
    org = server.vault.add_org("Acme", owner=alice)
    col = server.vault.add_collection(org, "tenant-a")
    item = server.vault.add_item(col, ".env", notes="...", fields={"DB_URL": "..."})
    bw = BwCli(server, appdata_dir)        # bwcli.py: env, argv and session handling for bw
    ...
    server.stop()

bw needs ``NODE_EXTRA_CA_CERTS=server.ca_cert_path``; ``server.requests`` logs every call.
"""

from .server import LoggedRequest, VaultwardenServer, start
from .store import Collection, Field, FieldType, Item, Login, Organization, Role, User, Vault

__all__ = [
    "Collection",
    "Field",
    "FieldType",
    "Item",
    "LoggedRequest",
    "Login",
    "Organization",
    "Role",
    "User",
    "Vault",
    "VaultwardenServer",
    "start",
]
