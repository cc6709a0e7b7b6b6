"""What one listening socket's clients may consume: connections, requests and bytes per second."""

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from colibri.daemon.wire import LARGE_BODY, MAX_BODY, MAX_HEAD, MAX_SMALL_BODY


@dataclass(frozen=True)
class Limits:
    """What one connection may consume (the daemon's settings; see etc/colibri.toml.sample)."""

    max_head: int = MAX_HEAD
    max_body: int = MAX_BODY
    max_small_body: int = MAX_SMALL_BODY
    large_body: re.Pattern[str] = LARGE_BODY  # the paths (before the query) allowed max_body
    request_timeout: float = 30.0  # a started request must be complete within this
    idle_timeout: float = 120.0  # an idle keep-alive connection, or one whose client does not read

    @property
    def max_buffer(self) -> int:
        return self.max_head + self.max_body + 4


class Pool:
    """A budget of connections shared by several sockets (the agent sockets' share of the fds)."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.count = 0


class Gate:
    """One listening socket's budget: its connections, its request rate (token bucket)."""

    def __init__(
        self, name: str, max_connections: int, rate: float = 0.0, burst: float = 0.0, limits: Limits | None = None,
        everyone: "set[Any] | None" = None, pool: Pool | None = None,
        refused: Callable[[str, str], None] | None = None, byte_rate: float = 0.0, byte_burst: float = 0.0,
    ) -> None:  # fmt: skip
        self.name = name
        self.max_connections = max_connections
        self.rate = rate
        self.burst = max(burst, rate, 1.0)
        self.limits = limits or Limits()
        # Bytes are charged too: parsing a 1 MiB body costs the loop tens of milliseconds, so a
        # request count alone would let one tenant spend the whole loop on big bodies.  The burst
        # holds at least one body of the largest size allowed.
        self.byte_rate = byte_rate
        self.byte_burst = max(byte_burst, byte_rate, float(self.limits.max_body + self.limits.max_head))
        self._bytes = self.byte_burst
        self._byte_stamp = time.monotonic()
        self.conns: set[Any] = set()  # the HttpProtocols it admitted
        self.everyone = everyone if everyone is not None else set()
        self.pool = pool
        self.refused = refused or (lambda gate, why: None)
        self._tokens = self.burst
        self._stamp = time.monotonic()

    def admit(self) -> bool:
        """A new connection: within this socket's budget (and the shared pool's)?"""
        if len(self.conns) >= self.max_connections:
            self.refused(self.name, "connections")
            return False
        if self.pool is not None and self.pool.count >= self.pool.cap:
            self.refused(self.name, "descriptors")
            return False
        return True

    def take(self, now: float, size: int = 0) -> bool:
        """One request's token and its ``size`` in bytes; False when this socket is over its rate."""
        if self.byte_rate > 0 and size:
            budget = min(self.byte_burst, self._bytes + (now - self._byte_stamp) * self.byte_rate)
            self._byte_stamp = now
            if budget < size:
                self._bytes = budget
                self.refused(self.name, "bytes")
                return False
            self._bytes = budget - size
        if self.rate <= 0:
            return True
        tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if tokens < 1.0:
            self._tokens = tokens
            self.refused(self.name, "rate")
            return False
        self._tokens = tokens - 1.0
        return True
