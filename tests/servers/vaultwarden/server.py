"""The HTTPS server: routing, authentication, request log, failure modes."""

from __future__ import annotations

import hmac
import json
import re
import shutil
import ssl
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

from . import auth, responses, tls
from .store import Role, User, Vault, new_id

Mode = Literal["normal", "garbage", "down"]
GARBAGE_BODY = b"<html><body>502 Bad Gateway? No: this is deliberately not JSON.</body></html>"
_ORG_COLLECTIONS = re.compile(r"^/api/organizations/(?P<org>[0-9a-fA-F-]{36})/collections$")


@dataclass(frozen=True)
class LoggedRequest:
    method: str
    path: str  # without the query string
    status: int
    grant_type: str | None = None  # for /identity/connect/token
    user_id: str | None = None  # for authenticated /api calls

    def __str__(self) -> str:
        grant = f" [{self.grant_type}]" if self.grant_type else ""
        return f"{self.method} {self.path}{grant} -> {self.status}"


@dataclass
class Reply:
    status: int
    body: Any = None  # JSON-encodable; None means an empty body
    grant_type: str | None = None
    user_id: str | None = None


class HttpError(Exception):
    def __init__(self, status: int, body: Any) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


class _TLSServer(ThreadingHTTPServer):
    daemon_threads = True
    app: VaultwardenServer

    def finish_request(self, request: Any, client_address: Any) -> None:
        # Handshake here, in the per-connection thread, so a slow or failing client never
        # blocks the accept loop.
        request.settimeout(15)
        with self.app.ssl_context.wrap_socket(request, server_side=True) as conn:
            _Handler(conn, client_address, self)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that reject the certificate or hang up are normal in failure tests.
        self.app.errors += 1


class _Handler(BaseHTTPRequestHandler):
    server: _TLSServer
    # HTTP/1.0: one request per connection, so stop() never waits on idle keep-alive sockets.
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the structured request log replaces stderr chatter

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        app = self.server.app
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path = urlsplit(self.path).path
        if app.mode == "garbage":
            self._send(200, GARBAGE_BODY, "text/html")
            app.log(LoggedRequest(self.command, path, 200))
            return
        try:
            reply = app.route(self.command, path, dict(self.headers.items()), body)
        except HttpError as err:
            reply = Reply(err.status, err.body)
        payload = b"" if reply.body is None else json.dumps(reply.body).encode()
        self._send(reply.status, payload, "application/json; charset=utf-8")
        app.log(LoggedRequest(self.command, path, reply.status, reply.grant_type, reply.user_id))

    def _send(self, status: int, payload: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


def _json_body(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body or b"{}")
    except ValueError as exc:
        raise HttpError(400, responses.api_error("Invalid JSON body")) from exc
    if not isinstance(data, dict):
        raise HttpError(400, responses.api_error("Invalid JSON body"))
    return data


class VaultwardenServer:
    """A Vaultwarden-compatible HTTPS server on 127.0.0.1 with an in-memory, seedable vault.

    Seed and mutate through ``server.vault`` (a :class:`Vault`); every request is appended to
    ``server.requests``.
    """

    def __init__(
        self,
        *,
        port: int = 0,
        cert_out: str | Path | None = None,
        user_key_id_route: bool = True,
        token_ttl: int = 7200,
        vault: Vault | None = None,
    ) -> None:
        self.vault = vault or Vault()
        # Real Vaultwarden releases (<= 2026-08) lack this route; bw then fails its first unlock.
        self.user_key_id_route = user_key_id_route
        self.token_ttl = token_ttl
        self.requests: list[LoggedRequest] = []
        self.errors = 0
        self.mode: Mode = "normal"
        self._port = port
        self._tmpdir = Path(tempfile.mkdtemp(prefix="vaultwarden-test-"))
        self.ca_cert_path = Path(cert_out) if cert_out else self._tmpdir / "ca.pem"
        self.ssl_context: ssl.SSLContext = tls.make_server_context(self.ca_cert_path)
        self._httpd: _TLSServer | None = None
        self._thread: threading.Thread | None = None
        self._log_lock = threading.Lock()
        self.url = ""
        self.tokens: auth.TokenIssuer | None = None

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> VaultwardenServer:
        httpd = _TLSServer(("127.0.0.1", self._port), _Handler)
        httpd.app = self
        self._httpd = httpd
        self.url = f"https://127.0.0.1:{httpd.server_address[1]}"
        self.tokens = auth.TokenIssuer(self.url, self.token_ttl)
        self._thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), name="vaultwarden-test", daemon=True)
        self._thread.start()
        return self

    def stop(self, *, keep_cert: bool = False) -> None:
        """Stop serving (idempotent). Later connections are refused, like a server that is down.

        ``keep_cert`` leaves the certificate file so clients still configured with it fail on
        the refused connection, not on a missing CA file.
        """
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if not keep_cert:
            shutil.rmtree(self._tmpdir, ignore_errors=True)

    def set_mode(self, mode: Mode) -> None:
        """``down`` stops the server; ``garbage`` answers everything with 200 and a non-JSON body."""
        if mode == "down":
            self.stop(keep_cert=True)
        self.mode = mode

    def __enter__(self) -> VaultwardenServer:
        return self if self._httpd else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    # --- request log -----------------------------------------------------------------------

    def log(self, entry: LoggedRequest) -> None:
        with self._log_lock:
            self.requests.append(entry)

    def requests_to(self, path: str, method: str | None = None) -> list[LoggedRequest]:
        with self._log_lock:
            return [r for r in self.requests if r.path == path and method in (None, r.method)]

    def clear_requests(self) -> None:
        with self._log_lock:
            self.requests.clear()

    # --- routing ---------------------------------------------------------------------------

    def route(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        public: dict[tuple[str, str], Callable[[bytes], Reply]] = {
            ("POST", "/identity/connect/token"): self._token,
            ("POST", "/identity/accounts/prelogin"): self._prelogin,
            ("POST", "/identity/accounts/prelogin/password"): self._prelogin,
            ("POST", "/api/accounts/prelogin"): self._prelogin,
            ("GET", "/api/config"): lambda _: Reply(200, responses.config(self.url)),
        }
        if (method, path) in public:
            return public[(method, path)](body)
        if not path.startswith("/api/"):
            raise HttpError(404, responses.not_found())
        user = self._authenticate(headers)
        reply = self._api(method, path, user, body)
        reply.user_id = user.id
        return reply

    def _authenticate(self, headers: dict[str, str]) -> User:
        value = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
        scheme, _, token = value.partition(" ")
        assert self.tokens is not None
        claims = self.tokens.verify(token) if scheme.lower() == "bearer" else None
        user = self.vault.users.get(claims["sub"]) if claims else None
        if user is None:
            raise HttpError(401, responses.api_error("Unauthorized"))
        return user

    def _api(self, method: str, path: str, user: User, body: bytes) -> Reply:
        if (method, path) == ("GET", "/api/sync"):
            return Reply(200, responses.sync(self.vault, user))
        if (method, path) == ("GET", "/api/accounts/revision-date"):
            return Reply(200, self.vault.revision_ms)
        if (method, path) == ("GET", "/api/collections"):
            return Reply(200, responses.collection_list(self.vault.visible_collections(user), self.vault))
        if (method, path) == ("POST", "/api/accounts/key-management/user-key-id") and self.user_key_id_route:
            return self._store_user_key_id(user, body)
        match = _ORG_COLLECTIONS.match(path)
        if method == "GET" and match:
            return self._org_collections(user, match["org"])
        raise HttpError(404, responses.not_found())

    # --- handlers --------------------------------------------------------------------------

    def _prelogin(self, body: bytes) -> Reply:
        email = str(_json_body(body).get("email", ""))
        return Reply(200, responses.prelogin(self.vault.user_by_email(email)))

    def _token(self, body: bytes) -> Reply:
        form = {k: v[0] for k, v in parse_qs(body.decode(), keep_blank_values=True).items()}
        grant = form.get("grant_type", "")
        handlers = {
            "password": self._password_grant,
            "client_credentials": self._client_credentials_grant,
            "refresh_token": self._refresh_grant,
        }
        if grant not in handlers:
            raise HttpError(400, responses.api_error("Invalid type", "unsupported_grant_type"))
        try:
            reply = handlers[grant](form)
        except HttpError as err:
            reply = Reply(err.status, err.body)
        reply.grant_type = grant
        return reply

    def _issue(self, user: User, scope: str, device_id: str, with_refresh: bool) -> Reply:
        assert self.tokens is not None
        access = self.tokens.access_token(user, scope, device_id)
        refresh = self.tokens.refresh_token(user, device_id) if with_refresh else None
        return Reply(200, responses.token(user, access, self.token_ttl, refresh, scope), user_id=user.id)

    def _password_grant(self, form: dict[str, str]) -> Reply:
        user = self.vault.user_by_email(form.get("username", ""))
        sent = form.get("password", "")
        if user is None or not hmac.compare_digest(sent, user.keys.auth_hash):
            message = "Username or password is incorrect. Try again"
            raise HttpError(400, responses.api_error(message, "invalid_grant"))
        device = form.get("deviceIdentifier") or new_id()
        return self._issue(user, auth.PASSWORD_SCOPE, device, with_refresh=True)

    def _client_credentials_grant(self, form: dict[str, str]) -> Reply:
        client_id = form.get("client_id", "")
        if form.get("scope") != auth.API_KEY_SCOPE:
            raise HttpError(400, responses.api_error("Scope not supported", "invalid_scope"))
        user = self.vault.users.get(client_id.removeprefix("user.")) if client_id.startswith("user.") else None
        if user is None:
            raise HttpError(400, responses.api_error("Invalid client_id", "invalid_client"))
        if not hmac.compare_digest(form.get("client_secret", ""), user.client_secret):
            raise HttpError(400, responses.api_error("Incorrect client_secret", "invalid_client"))
        device = form.get("deviceIdentifier") or new_id()
        return self._issue(user, auth.API_KEY_SCOPE, device, with_refresh=False)

    def _refresh_grant(self, form: dict[str, str]) -> Reply:
        assert self.tokens is not None
        found = self.tokens.redeem(form.get("refresh_token", ""))
        user = self.vault.users.get(found[0]) if found else None
        if found is None or user is None:
            message = "Unable to refresh login credentials"
            raise HttpError(400, responses.api_error(message, "invalid_grant"))
        access = self.tokens.access_token(user, auth.PASSWORD_SCOPE, found[1])
        body = responses.refreshed_token(access, self.token_ttl, form["refresh_token"], auth.PASSWORD_SCOPE)
        return Reply(200, body, user_id=user.id)

    def _store_user_key_id(self, user: User, body: bytes) -> Reply:
        key_id = _json_body(body).get("userKeyId")
        if not isinstance(key_id, str) or not key_id:
            raise HttpError(400, responses.api_error("userKeyId is required"))
        with self.vault.lock:
            user.user_key_id = key_id
        return Reply(200)

    def _org_collections(self, user: User, org_id: str) -> Reply:
        org = self.vault.orgs.get(org_id.lower())
        member = org.members.get(user.id) if org else None
        if org is None or member is None:
            raise HttpError(400, responses.api_error("Organization not found"))
        # Vaultwarden: ManagerHeadersLoose plus has_full_access(), else "Resource not found." (404)
        if member.role == Role.USER or not member.full_access:
            raise HttpError(404, responses.api_error("Resource not found."))
        cols = [c for c in self.vault.visible_collections(user) if c.org_id == org.id]
        return Reply(200, responses.collection_list(cols, self.vault))


def start(
    *,
    port: int = 0,
    cert_out: str | Path | None = None,
    user_key_id_route: bool = True,
    token_ttl: int = 7200,
    vault: Vault | None = None,
) -> VaultwardenServer:
    """Start a server in a background thread; see :class:`VaultwardenServer`."""
    server = VaultwardenServer(
        port=port, cert_out=cert_out, user_key_id_route=user_key_id_route, token_ttl=token_ttl, vault=vault
    )
    return server.start()
