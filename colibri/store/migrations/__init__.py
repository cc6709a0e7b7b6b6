"""Alembic migrations, one file per revision: ``versions/NNNN_name.py`` with ``revision = "NNNN"``.

``head()`` reads the newest revision from the file names so the fast path of ``migrate`` needs no
Alembic import; a test checks that it agrees with Alembic's own view.
"""

import re
from functools import cache
from pathlib import Path

_REVISION_FILE = re.compile(r"^(\d{4})_\w+\.py$")


@cache
def head() -> str:
    names = (Path(__file__).parent / "versions").iterdir()
    revisions = [m.group(1) for n in names if (m := _REVISION_FILE.match(n.name))]
    return max(revisions)
