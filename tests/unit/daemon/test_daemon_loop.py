"""The daemon's asyncio error handler and descriptor budget, without sockets."""

import errno
import logging
from pathlib import Path

import pytest

from colibri.daemon.server import Daemon
from colibri.settings import Settings


def test_out_of_descriptors_on_accept_is_one_line_without_a_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    daemon = Daemon(Settings(state_dir=tmp_path, run_dir=tmp_path / "run"))
    try:
        with caplog.at_level(logging.WARNING, logger="colibri.daemon"):
            for code in (errno.EMFILE, errno.ENFILE):
                context = {"message": "socket.accept() out of system resource", "exception": OSError(code, "x")}
                daemon._loop_exception(None, context)  # type: ignore[arg-type]
        assert len(caplog.records) == 2 and not any(r.exc_info for r in caplog.records)
        assert "pauses accepting" in caplog.records[0].getMessage()
        assert "colibri_accept_errors_total 2" in daemon.metrics.render({})
        caplog.clear()
        with caplog.at_level(logging.ERROR, logger="colibri.daemon"):
            daemon._loop_exception(None, {"message": "boom", "exception": KeyError("k")})  # type: ignore[arg-type]
        assert caplog.records[0].exc_info  # anything else keeps its traceback
    finally:
        daemon._pool.shutdown()
        daemon._side.shutdown()


def test_agent_sockets_get_the_descriptors_left_after_the_reserve(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path, run_dir=tmp_path / "run", daemon_fd_reserve=100,
                        daemon_admin_max_connections=50)  # fmt: skip
    daemon = Daemon(settings)
    try:
        daemon.sockets.fd_limit = 1024
        daemon.sockets.resize_pool()
        assert daemon.sockets.pool.cap == 1024 - 100 - 50
        admin, tenant = daemon.sockets.gate("admin", admin=True), daemon.sockets.gate("tenant:t")
        assert admin.pool is None and tenant.pool is daemon.sockets.pool  # the admin's budget is its own
        assert admin.max_connections == 50 and tenant.max_connections == settings.daemon_max_connections_per_socket
    finally:
        daemon._pool.shutdown()
        daemon._side.shutdown()
