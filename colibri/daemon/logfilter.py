"""Log lines rate-limited per cause: a tenant that triggers a warning 10,000 times a second must not
fill the host's disk (issue 8 saw 136 MB in 35 s), and the operator still learns how many there were.

The cause of a line is its logger, level, message template (``record.msg``, before the ``%``
arguments are applied) and the tenant (or lane, or socket) it is about, passed by the call site as
``extra={"tenant": ...}`` (``extra=about(key)``): "agent %s is %s" for one tenant's 4,000 agents is
one cause, and one tenant flooding it does not hide another tenant's lines.  Causes are bounded
(``MAX_CAUSES``): beyond, causes whose window is over are forgotten first, then new causes share
one window per template.  Each cause may log
``lines`` lines per ``interval`` seconds; the rest are counted, and the first line of the next
interval (or ``flush()``, which the daemon calls every few seconds) says how many were suppressed.
"""

import logging
import logging.handlers
import time
from collections.abc import Callable
from pathlib import Path

from colibri.text import safe

MAX_CAUSES = 4096  # templates x tenants with a line in the current interval
OVERFLOW = "*"  # the tenant of causes past MAX_CAUSES


def about(key: str | None) -> dict[str, str]:
    """``extra=`` for a log line about a tenant, a lane, or an agent key (``tenant/agent``,
    ``lane:name/agent``): its rate-limit cause is that owner's."""
    return {"tenant": "" if key is None else key.partition("/")[0]}


class _Window:
    __slots__ = ("lines", "sample", "start", "suppressed")

    def __init__(self, start: float, sample: logging.LogRecord) -> None:
        self.start = start
        self.lines = 1
        self.suppressed = 0
        self.sample = sample


class RateLimit(logging.Filter):
    def __init__(self, lines: int = 20, interval: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.lines = lines
        self.interval = interval
        self._clock = clock
        self._seen: dict[tuple[str, int, str, str], _Window] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "colibri_summary", False):
            return True
        cause = (record.name, record.levelno, str(record.msg), str(getattr(record, "tenant", "")))
        now = self._clock()
        window = self._seen.get(cause)
        if window is None and len(self._seen) >= MAX_CAUSES:
            self._forget(now)
            if len(self._seen) >= MAX_CAUSES:  # every cause is live: new ones share a window
                cause = (*cause[:3], OVERFLOW)
                window = self._seen.get(cause)
        if window is None or now - window.start >= self.interval:
            suppressed = 0 if window is None else window.suppressed
            self._seen[cause] = _Window(now, record)
            if suppressed:
                record.msg = f"{record.msg} [{suppressed} similar lines suppressed before this one]"
            return True
        if window.lines < self.lines:
            window.lines += 1
            return True
        window.suppressed += 1
        return False

    def _forget(self, now: float) -> None:
        """Drop the causes whose window is over and that suppressed nothing (nothing to report)."""
        for cause, window in list(self._seen.items()):
            if now - window.start >= self.interval and not window.suppressed:
                del self._seen[cause]

    def flush(self, logger: logging.Logger) -> None:
        """One summary line per cause whose window is over and which suppressed lines."""
        now = self._clock()
        for cause, window in list(self._seen.items()):
            if now - window.start < self.interval:
                continue
            del self._seen[cause]
            if window.suppressed:
                logger.log(
                    window.sample.levelno,
                    "%d similar log lines suppressed in %.0f s, like: %s",
                    window.suppressed,
                    self.interval,
                    window.sample.getMessage()[:300],
                    extra={"colibri_summary": True},
                )


class SafeFormatter(logging.Formatter):
    """A log line shows what a tenant sent (agent ids, capabilities, names) escaped: no terminal
    sequence reaches whoever tails the log, and no newline forges a line of its own.  A traceback
    keeps its line breaks; each of its lines is escaped likewise."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return safe(super().formatMessage(record))

    def format(self, record: logging.LogRecord) -> str:
        # The message has no raw newline left; what keeps its line breaks is the traceback (whose
        # text another handler may have cached on the record unescaped).
        return safe(super().format(record), keep_newlines=True)


RATE_LIMIT = RateLimit()


def configure_logging(target: str, lines: int = 20, interval: float = 10.0) -> None:
    """Log to stderr, or to syslog(3) (facility daemon) as rc.d services do; rate-limited per cause."""
    RATE_LIMIT.lines, RATE_LIMIT.interval = lines, interval
    root = logging.getLogger("colibri")
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    sink: logging.Handler
    if target == "syslog":
        address = "/var/run/log" if Path("/var/run/log").exists() else "/dev/log"
        sink = logging.handlers.SysLogHandler(address, logging.handlers.SysLogHandler.LOG_DAEMON)
        sink.setFormatter(SafeFormatter("colibri[%(process)d]: %(message)s"))
    else:
        sink = logging.StreamHandler()
        sink.setFormatter(SafeFormatter("%(asctime)s colibri %(levelname)s %(message)s"))
    sink.addFilter(RATE_LIMIT)
    root.addHandler(sink)
    root.setLevel(logging.INFO)
    root.propagate = False
