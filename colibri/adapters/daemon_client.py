"""A client of the daemon's admin socket: HTTP/1.1 + JSON over AF_UNIX with the stdlib.

Transport failures become DaemonError (exit 16); the daemon's error envelope
``{"error": {"type", "code", "message"}}`` becomes the matching ColibriError, so ``colibri task 9``
for a task that does not exist exits 4 as any other NotFound does.
"""

import http.client
import json
import socket
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from colibri.error_envelope import error_from_api
from colibri.errors import ColibriError, DaemonError


class UnixHTTPConnection(http.client.HTTPConnection):
    """``http.client`` over a Unix socket (the host name is only sent in the Host header)."""

    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(str(self._path))
        except OSError:
            sock.close()
            raise
        self.sock = sock


class AnswerLost(DaemonError):
    """The request may have reached the daemon, but no answer came back (only idempotent calls retry)."""


def new_idempotency_key() -> str:
    return uuid.uuid4().hex


def _error_from(envelope: Any, status: int) -> ColibriError:
    detail = envelope.get("error") if isinstance(envelope, dict) else None
    if not isinstance(detail, dict):
        return DaemonError(f"the daemon answered HTTP {status}")
    message = str(detail.get("message", f"HTTP {status}"))
    return error_from_api(detail.get("type"), detail.get("code"), message)


class DaemonClient:
    """The admin API (docs/openapi.yaml).  Every call opens one short connection."""

    def __init__(self, socket_path: Path, timeout: float = 10.0) -> None:
        self.socket_path = socket_path
        self.timeout = timeout

    def request(self, method: str, path: str, body: Any = None, timeout: float | None = None) -> Any:
        """One request; returns the decoded JSON (None for 204).  Raises DaemonError or the mapped error."""
        conn = UnixHTTPConnection(self.socket_path, timeout or self.timeout)
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        try:
            conn.request(method, path, body=data, headers=headers)
            response = conn.getresponse()
            raw = response.read()
            status = response.status
        except FileNotFoundError:
            raise DaemonError(f"the colibri daemon is not running (no socket at {self.socket_path})") from None
        except ConnectionRefusedError:
            raise DaemonError(f"the colibri daemon is not running (nothing listens on {self.socket_path})") from None
        except PermissionError:
            raise DaemonError(f"permission denied on {self.socket_path}: the admin socket is root-only") from None
        except (OSError, http.client.HTTPException) as exc:
            raise AnswerLost(f"the colibri daemon did not answer on {self.socket_path}: {exc}") from None
        finally:
            conn.close()
        if status == 204:
            return None
        try:
            decoded = json.loads(raw) if raw else None
        except ValueError:
            decoded = raw.decode(errors="replace")
        if status >= 400:
            raise _error_from(decoded, status)
        return decoded

    def health(self) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", "/health")
        return result

    def metrics(self) -> str:
        return str(self.request("GET", "/metrics"))

    def agents(self, tenant: str | None = None, state: str | None = None) -> list[dict[str, Any]]:
        query = urlencode({k: v for k, v in (("tenant", tenant), ("state", state)) if v is not None})
        result: list[dict[str, Any]] = self.request("GET", "/v1/agents" + (f"?{query}" if query else ""))["agents"]
        return result

    def submit(
        self, capability: str, payload: Any, tenant: str | None = None, idempotency_key: str | None = None,
        retries: int = 2,
    ) -> dict[str, Any]:  # fmt: skip
        """Queue a task, idempotently: a key is made up when none is given, and the same key is sent
        again when an answer is lost, so the daemon returns the task it created the first time."""
        key = idempotency_key or new_idempotency_key()
        body: dict[str, Any] = {"capability": capability, "payload": payload, "idempotency_key": key}
        if tenant is not None:
            body["tenant"] = tenant
        for attempt in range(retries + 1):
            try:
                result: dict[str, Any] = self.request("POST", "/v1/tasks", body)
                return result
            except AnswerLost:
                if attempt == retries:
                    raise
                time.sleep(0.2 * (attempt + 1))
        raise AssertionError("unreachable")  # pragma: no cover

    def tasks(self, tenant: str | None = None, state: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        params = {"tenant": tenant, "state": state, "limit": str(limit)}
        query = urlencode({k: v for k, v in params.items() if v is not None})
        result: list[dict[str, Any]] = self.request("GET", f"/v1/tasks?{query}")["tasks"]
        return result

    def task(self, task_id: int, wait: float = 0) -> dict[str, Any]:
        suffix = f"?wait={wait:g}" if wait > 0 else ""
        result: dict[str, Any] = self.request("GET", f"/v1/tasks/{task_id}{suffix}", timeout=self.timeout + wait)
        return result

    def open_tenant_socket(self, tenant: str) -> dict[str, Any]:
        """For the spawn pipeline: make the daemon listen on the tenant's agent socket now."""
        result: dict[str, Any] = self.request("POST", f"/v1/tenants/{quote(tenant, safe='')}/socket")
        return result

    def close_tenant_socket(self, tenant: str) -> dict[str, Any]:
        result: dict[str, Any] = self.request("DELETE", f"/v1/tenants/{quote(tenant, safe='')}/socket")
        return result

    def tenant_action(self, tenant: str, action: str) -> dict[str, Any]:
        """E.g. ``reload-secrets`` after a key rotation: delivered with the agents' next heartbeat."""
        path = f"/v1/tenants/{quote(tenant, safe='')}/actions"
        result: dict[str, Any] = self.request("POST", path, {"action": action})
        return result

    def declare_lane(self, lane: str) -> dict[str, Any]:
        result: dict[str, Any] = self.request("POST", f"/v1/lanes/{quote(lane, safe='')}")
        return result
