"""A migrated store with four active tenants, made once per module and dialect and copied for each
test (an SQLite file copy; a PostgreSQL ``CREATE DATABASE ... TEMPLATE``): migrating a fresh
database for every test cost a second each."""

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from colibri.audit import origin
from colibri.store.db import Store
from tests.unit.daemon.hive_world import active_tenants

TENANTS = {"queen": "h", "worker": "h", "grand": "h", "other": "h"}


@pytest.fixture(name="template", scope="module", params=["sqlite", "postgres"])
def template_fixture(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("policy") / "template.db"
        active_tenants(f"sqlite:///{path}", TENANTS).close()
        return "sqlite", path, None
    server = request.getfixturevalue("postgres_server")
    url = server.create_database()
    active_tenants(url, TENANTS).close()
    return "postgres", url.rsplit("/", 1)[1], server


@pytest.fixture(name="world_url")
def world_url_fixture(template: Any, tmp_path: Path) -> str:
    kind, source, server = template
    if kind == "sqlite":
        shutil.copy(source, tmp_path / "store.db")
        return f"sqlite:///{tmp_path / 'store.db'}"
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(f"host=127.0.0.1 port={server.port} user={server.user} dbname=postgres", autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}" TEMPLATE "{source}"')
    return str(server.url(name))


@pytest.fixture(name="world")
def world_fixture(world_url: str) -> Iterator[Store]:
    store = Store(world_url)
    with origin.acting("operator:test", host="h"):
        yield store
    store.close()
