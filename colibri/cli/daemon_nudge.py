"""What a command tells a running daemon after a change: reload a tenant's secrets, open or close
its agent socket.  Without a daemon nothing is told (it reads the store when it starts), and a
daemon that does not answer is no error of the command's: the change is in the store already."""

import contextlib
from typing import TYPE_CHECKING

from colibri.errors import DaemonError

if TYPE_CHECKING:  # the client module is imported by whoever makes one, not by --help
    from colibri.adapters.daemon_client import DaemonClient


def reload_secrets(client: "DaemonClient", tenant_id: str) -> None:
    """A tenant's .env changed: a running daemon tells its agents with their next heartbeat."""
    if client.socket_path.exists():
        with contextlib.suppress(DaemonError):
            client.tenant_action(tenant_id, "reload-secrets")


def open_socket(client: "DaemonClient", tenant_id: str) -> None:
    """Ask a running daemon to listen on the tenant's agent socket now; without a daemon the
    socket appears when it starts (it opens every active tenant's)."""
    if client.socket_path.exists():
        with contextlib.suppress(DaemonError):
            client.open_tenant_socket(tenant_id)


def close_socket(client: "DaemonClient", tenant_id: str) -> bool:
    """Ask a running daemon to close the tenant's agent socket (release-agent); False when there
    is no daemon or it had none open."""
    if not client.socket_path.exists():
        return False
    try:
        return bool(client.close_tenant_socket(tenant_id).get("closed"))
    except DaemonError:
        return False
