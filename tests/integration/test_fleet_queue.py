"""Issue 11, the queue on many hosts: several daemons (one per host) on one PostgreSQL database.

Real parts only: the PostgreSQL server of tests/servers/postgres.py, the daemons and the lane
agents' API calls on their real Unix sockets (tests/integration/fleet.py).
"""

import subprocess
import sys

import pytest
from sqlalchemy import create_engine, text

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

OPEN_STORE = "import sys; from colibri.store.db import Store; Store(sys.argv[1]).close()"


def test_three_processes_migrate_one_empty_database_once(postgres_server) -> None:
    url = postgres_server.create_database()
    procs = [
        subprocess.Popen([sys.executable, "-c", OPEN_STORE, url], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(3)
    ]
    outcomes = [(p.wait(120), p.stderr.read().decode() if p.stderr else "") for p in procs]
    for proc in procs:
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    assert [code for code, _ in outcomes] == [0, 0, 0], outcomes
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            versions = conn.execute(text("SELECT version_num FROM alembic_version")).all()
            tables = conn.execute(text("SELECT count(*) FROM pg_tables WHERE tablename = 'tasks'")).scalar()
    finally:
        engine.dispose()
    assert len(versions) == 1 and tables == 1
