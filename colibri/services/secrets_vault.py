"""``colibri vault login|status|check``: what is configured and whether it works, never a value.

Provisioning tenants' secrets from the vault is colibri/services/secrets.py; this is the
operator's view of the vault itself (the credentials, bw's state, one proving login).
"""

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from colibri.adapters.bitwarden import Bitwarden, normalise_url
from colibri.adapters.credentials import CredentialStore, OperatorCredentials
from colibri.errors import ColibriError, SecretsError

if TYPE_CHECKING:
    from colibri.store.db import Store


class VaultService:
    """``colibri vault login|status|check``: what is configured and whether it works, no values."""

    def __init__(
        self,
        bitwarden: Bitwarden | None,
        credentials: CredentialStore,
        vault_url: str | None,
        organization_id: str | None,
        store: "Callable[[], Store] | None" = None,
    ) -> None:
        self._store = store  # where a login's audit entry goes (opened only by a login)
        self._bw = bitwarden
        self._credentials = credentials
        self._url = vault_url
        self._org = organization_id

    def _require_bw(self) -> Bitwarden:
        if self._bw is None:
            raise SecretsError("the vault is not configured: set vault_url and vault_organization_id")
        return self._bw

    def status(self) -> dict[str, Any]:
        """Settings, which credentials are present, and bw's own state.  Never a value."""
        shown: dict[str, Any] = {
            "vault_url": self._url,
            "organization_id": self._org,
            "credentials_source": self._credentials.source(),
            "credentials_dir": str(self._credentials.directory),
        }
        problems: list[str] = []
        try:
            shown["credentials"] = self._credentials.present()
        except ColibriError as exc:
            shown["credentials"] = {}
            problems.append(str(exc))
        if self._bw is None:
            problems.append("vault_url and vault_organization_id must both be set")
        else:
            shown["bw_data_dir"] = str(self._bw.config.appdata_dir)
            try:
                state = self._bw.status()
                shown["bw_server_url"] = state.server_url
                shown["bw_login"] = state.status
                wanted = normalise_url(self._bw.config.server_url)
                matches = state.server_url is not None and normalise_url(state.server_url) == wanted
                shown["server_matches"] = matches
                if not matches and state.status != "unauthenticated":
                    # Logged out, bw is pointed at vault_url before the next login; logged in
                    # elsewhere, every provisioning refuses to send credentials until this is done.
                    problems.append(
                        f"bw in {self._bw.config.appdata_dir} is logged in to "
                        f"{state.server_url or 'the default server'}, not to vault_url {wanted}: "
                        "provisioning refuses to send credentials there; run 'colibri vault login' "
                        "(it logs out, points bw at vault_url and logs in again)"
                    )
            except ColibriError as exc:
                problems.append(str(exc))
        shown["problems"] = problems
        return shown

    def check(self) -> dict[str, Any]:
        """Unlock, sync and list the organization's collections once.  Raises on any failure."""
        snapshot = self._require_bw().snapshot(self._credentials.load())
        return {
            "vault_url": self._url,
            "organization_id": self._org,
            "collections": sorted(c.name for c in snapshot.collections),
            "items": len(snapshot.items),
            "bw_calls": snapshot.bw_calls,
        }

    def login(self, credentials: OperatorCredentials, to: str) -> dict[str, Any]:
        """Prove ``credentials`` against the vault (fresh login), then store them in ``to``
        (``keyring`` or ``files``).  Nothing is stored when the proof fails."""
        snapshot = self._require_bw().login(credentials)
        if self._store is None:
            where = self._credentials.save(credentials, to)
        else:  # the entry first, the credentials saved inside its transaction: no entry, no change
            from colibri.store.audit_hooks import record

            with self._store().session() as session:
                record(session, "vault.login", f"vault:{normalise_url(self._url or '')[:200] or '-'}", stored_in=to)
                where = self._credentials.save(credentials, to)
        return {"stored_in": where, "collections": sorted(c.name for c in snapshot.collections)}
