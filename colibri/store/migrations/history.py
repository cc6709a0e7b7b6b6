"""The revisions this colibri knows, read from the migration scripts (imports Alembic: slow path)."""

from functools import cache
from pathlib import Path


@cache
def known_revisions() -> frozenset[str]:
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory(str(Path(__file__).parent))
    return frozenset(rev.revision for rev in scripts.walk_revisions())


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory(str(Path(__file__).parent)).get_current_head()
    assert head is not None
    return head
