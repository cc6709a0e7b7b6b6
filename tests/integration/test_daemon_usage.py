"""The daemon's own use of the host in ``colibri daemon status`` and ``/metrics`` (through
colibri.adapters.host), checked against the kernel's own numbers for the daemon's pid."""

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.hive_harness import Hive, Raw

pytestmark = pytest.mark.integration


@pytest.fixture(name="hive")
def hive_fixture() -> Iterator[Hive]:
    hive = Hive()
    hive.tenant("demo")
    hive.start()
    try:
        yield hive
    finally:
        hive.close()


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_status_and_metrics_show_the_daemons_memory_descriptors_and_sockets(hive: Hive) -> None:
    assert hive.daemon is not None
    pid = hive.daemon.pid
    status = json.loads(hive.colibri("daemon", "status", "--json").stdout)["data"]
    # admin.sock, the tenant's agent.sock and the client's connection at least, all Unix sockets
    assert status["connections"] >= 3
    assert abs(status["open_fds"] - _fds(pid)) <= 4 and status["open_fds"] >= status["connections"]
    assert abs(status["rss_bytes"] - _rss(pid)) < 16 << 20 and status["rss_bytes"] > 8 << 20
    text = hive.colibri("daemon", "status").stdout
    lines = dict(line.split(None, 1) for line in text.splitlines())
    assert {"rss_bytes", "open_fds", "connections"} <= lines.keys()
    assert int(lines["open_fds"]) > 0 and int(lines["rss_bytes"]) > 0

    held = Raw(hive.root / "run" / "admin.sock")  # one more connection open while it counts
    try:
        assert held("GET", "/health")[0] == 200
        metrics = {
            line.split()[0]: float(line.split()[1])
            for line in hive.admin.metrics().splitlines()
            if line and not line.startswith("#")
        }
    finally:
        held.close()
    assert metrics["process_open_fds"] >= status["open_fds"]
    assert metrics["colibri_process_connections"] >= status["connections"] + 1
    assert abs(metrics["process_resident_memory_bytes"] - _rss(pid)) < 16 << 20
    assert "# TYPE process_open_fds gauge" in hive.admin.metrics()
