"""HS256 access tokens with a per-run secret, plus opaque refresh tokens.

bw decodes the JWT without checking the signature (it reads exp, sub, email, name, iss,
email_verified, amr); the server checks signature and ``exp`` on every ``/api/*`` call.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import threading
import time
from typing import Any

from .store import User

PASSWORD_SCOPE = "api offline_access"
API_KEY_SCOPE = "api"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenIssuer:
    def __init__(self, issuer: str, ttl_seconds: int) -> None:
        self.issuer = issuer
        self.ttl_seconds = ttl_seconds
        self._secret = os.urandom(32)
        self._refresh: dict[str, tuple[str, str]] = {}  # refresh token -> (user id, device id)
        self._lock = threading.Lock()

    def _sign(self, signing_input: bytes) -> str:
        return _b64url(hmac.new(self._secret, signing_input, hashlib.sha256).digest())

    def access_token(self, user: User, scope: str, device_id: str) -> str:
        now = int(time.time())
        claims = {
            "nbf": now,
            "exp": now + self.ttl_seconds,
            "iss": f"{self.issuer}|login",
            "sub": user.id,
            "premium": True,
            "name": user.name,
            "email": user.email,
            "email_verified": True,
            "sstamp": user.security_stamp,
            "device": device_id,
            "devicetype": "linux",
            "client_id": "cli",
            "scope": scope.split(),
            "amr": ["Application"],
        }
        header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        payload = _b64url(json.dumps(claims, separators=(",", ":")).encode())
        signing_input = f"{header}.{payload}".encode()
        return f"{header}.{payload}.{self._sign(signing_input)}"

    def verify(self, token: str) -> dict[str, Any] | None:
        """Claims of a valid, unexpired token from this run; None otherwise."""
        parts = token.split(".")
        if len(parts) != 3:
            return None
        header, payload, signature = parts
        if not hmac.compare_digest(signature, self._sign(f"{header}.{payload}".encode())):
            return None
        try:
            claims: dict[str, Any] = json.loads(_unb64url(payload))
        except ValueError:
            return None
        if not isinstance(claims.get("exp"), int) or claims["exp"] <= time.time():
            return None
        return claims

    def refresh_token(self, user: User, device_id: str) -> str:
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._refresh[token] = (user.id, device_id)
        return token

    def redeem(self, refresh_token: str) -> tuple[str, str] | None:
        """(user id, device id) for a known refresh token. Tokens stay valid, as in Vaultwarden."""
        with self._lock:
            return self._refresh.get(refresh_token)
