"""A skills repository served over HTTP as static files (issue 13): the real urllib path against a
local ``http.server`` thread, bounded in bytes; unreachable and redirecting servers refused."""

import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from colibri.adapters.skill_repo import HttpRepository, open_repository
from colibri.errors import ConfigError, SupplyError, SupplyUnavailable
from colibri.services.skills.resolve import SkillRef, SkillResolver
from tests.unit.skills.forge import Forge

pytestmark = pytest.mark.integration


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        if self.path.startswith("/moved/"):
            self.send_response(302)
            self.send_header("Location", "/" + self.path.removeprefix("/moved/"))
            self.end_headers()
            return
        super().do_GET()


@pytest.fixture(name="served")
def served_fixture(tmp_path: Path) -> Iterator[tuple[Forge, str]]:
    forge = Forge(tmp_path)
    handler = functools.partial(_Quiet, directory=str(forge.repo.directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield forge, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_resolves_over_http(served: tuple[Forge, str]) -> None:
    forge, url = served
    forge.publish(forge.bundle("mail"), forge.bundle("post"))
    resolver = SkillResolver(open_repository(url + "/", 5.0), forge.trust, forge.now)
    assert resolver.available()
    found = resolver.resolve(
        [SkillRef("mail", None), SkillRef("post", None)], tier="paid", other_tenants=[], staging=forge.staging
    )
    assert [(s.name, (s.root / "SKILL.md").read_text()) for s in found] == [("mail", "# mail\n"), ("post", "# post\n")]


def test_a_tampered_bundle_over_http_is_refused(served: tuple[Forge, str]) -> None:
    forge, url = served
    forge.publish(forge.bundle("mail"))
    path = forge.repo.directory / "bundles/mail-1.0.0.tar"
    path.write_bytes(path.read_bytes() + b"\0" * 512)  # longer than the index says: never read past it
    resolver = SkillResolver(HttpRepository(url, 5.0), forge.trust, forge.now)
    with pytest.raises(SupplyError, match="larger than"):
        resolver.resolve([SkillRef("mail", None)], tier="paid", other_tenants=[], staging=forge.staging)
    assert list(forge.staging.iterdir()) == []


def test_reads_are_bounded_and_redirects_not_followed(served: tuple[Forge, str]) -> None:
    forge, url = served
    forge.publish(forge.bundle("mail"))
    repo = HttpRepository(url, 5.0)
    assert repo.fetch("index.json", 1 << 20).startswith(b'{"signatures"')
    with pytest.raises(SupplyError, match="larger than 10 bytes"):
        repo.fetch("index.json", 10)
    with pytest.raises(SupplyUnavailable, match="answered 302"):
        HttpRepository(url + "/moved", 5.0).fetch("index.json", 1 << 20)
    with pytest.raises(SupplyUnavailable, match="answered 404"):
        repo.fetch("bundles/none-1.0.0.tar", 1 << 20)
    with pytest.raises(SupplyError, match="not a repository path"):
        repo.fetch("../etc/passwd", 1 << 20)


def test_an_unreachable_server_blocks_new_installs(served: tuple[Forge, str]) -> None:
    forge, _ = served
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    resolver = SkillResolver(HttpRepository(f"http://127.0.0.1:{port}", 2.0), forge.trust, forge.now)
    with pytest.raises(SupplyUnavailable, match=r"unreachable: .*new skill installs are blocked"):
        resolver.resolve([SkillRef("mail", None)], tier="paid", other_tenants=[], staging=forge.staging)


def test_a_setting_that_is_neither_path_nor_url_is_refused() -> None:
    for bad in ("relative/dir", "ftp://x/y", "file:///etc"):
        with pytest.raises(ConfigError):
            open_repository(bad)
