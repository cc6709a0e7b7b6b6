"""Counters and gauges in Prometheus' text exposition format (version 0.0.4), no client library."""

from collections import Counter
from collections.abc import Mapping

from colibri.adapters import host

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

HELP = {
    "colibri_up": ("gauge", "1 while the daemon runs"),
    "colibri_info": ("gauge", "build information"),
    "colibri_store_up": ("gauge", "1 when the last store operation succeeded"),
    "colibri_agents": ("gauge", "agents known to the daemon, by state"),
    "colibri_tasks": ("gauge", "tasks in the store, by state"),
    "colibri_heartbeat_interval_seconds": ("gauge", "base heartbeat interval of a tenant with one agent"),
    "colibri_agent_sockets": ("gauge", "open agent sockets (tenants and lanes)"),
    "colibri_heartbeats_total": ("counter", "heartbeats received"),
    "colibri_heartbeat_rows_written_total": ("counter", "agent rows written by heartbeat flushes"),
    "colibri_heartbeat_flushes_total": ("counter", "batched heartbeat flushes"),
    "colibri_http_requests_total": ("counter", "HTTP requests answered, by socket kind and status"),
    "colibri_tasks_submitted_total": ("counter", "tasks queued"),
    "colibri_tasks_claimed_total": ("counter", "task leases handed out"),
    "colibri_tasks_finished_total": ("counter", "tasks finished, by outcome"),
    "colibri_tasks_requeued_total": ("counter", "tasks put back in the queue or failed by a lost lease"),
    "colibri_tasks_pruned_total": ("counter", "finished tasks deleted by their age (task_retention_seconds)"),
    "colibri_store_errors_total": ("counter", "store operations that failed"),
    "colibri_reconcile_runs_total": ("counter", "reconcile hook runs, by outcome"),
    "colibri_connections": ("gauge", "open HTTP connections, all sockets"),
    "colibri_claims_waiting": ("gauge", "long-poll claims waiting for a task"),
    "colibri_task_waits": ("gauge", "long-polls waiting for a task to finish"),
    "colibri_http_refused_total": ("counter", "connections or requests refused by a limit, by reason"),
    "colibri_accept_errors_total": ("counter", "accepts that failed for want of descriptors"),
    "process_resident_memory_bytes": ("gauge", "resident memory of the daemon process, bytes"),
    "process_open_fds": ("gauge", "file descriptors the daemon process has open"),
    "colibri_process_connections": ("gauge", "sockets the daemon process has open (any family, listening or not)"),
}

_USAGE_GAUGES = {
    "rss_bytes": "process_resident_memory_bytes",
    "open_fds": "process_open_fds",
    "connections": "colibri_process_connections",
}


def process_health() -> dict[str, int | None]:
    """The daemon's own use of the host for ``/health`` (``colibri daemon status``): ``rss_bytes``,
    ``open_fds``, ``connections``; None where the kernel would not say."""
    usage = host.usage()
    return {"rss_bytes": usage.rss_bytes, "open_fds": usage.open_fds, "connections": usage.connections}


def process_gauges() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The same for ``/metrics``, under the Prometheus process collector's names where there is one
    (a value the kernel would not give is left out, not shown as 0)."""
    return {(_USAGE_GAUGES[key], ()): value for key, value in process_health().items() if value is not None}


class Metrics:
    def __init__(self) -> None:
        self.counters: Counter[tuple[str, tuple[tuple[str, str], ...]]] = Counter()

    def inc(self, name: str, amount: float = 1, **labels: str) -> None:
        self.counters[(name, tuple(sorted(labels.items())))] += amount  # type: ignore[assignment]

    def render(self, gauges: Mapping[tuple[str, tuple[tuple[str, str], ...]], float]) -> str:
        samples: dict[str, list[str]] = {}
        for (name, labels), value in [*gauges.items(), *self.counters.items()]:
            samples.setdefault(name, []).append(f"{name}{_labels(labels)} {_number(value)}")
        out: list[str] = []
        for name in sorted(samples):
            kind, text = HELP.get(name, ("untyped", name))
            out += [f"# HELP {name} {text}", f"# TYPE {name} {kind}", *sorted(samples[name])]
        return "\n".join(out) + "\n"


def _labels(labels: tuple[tuple[str, str], ...]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))
