"""Writing to a test world's store in-process as that host's colibri would: under its audit origin
and with its entry key (V3: a host signs only entries that carry its MAC), so the CLI run later
in the same world signs them instead of refusing them as another host's."""

import contextlib
from collections.abc import Iterator
from pathlib import Path

from colibri.adapters.audit_keys import KeyDir
from colibri.audit import origin


@contextlib.contextmanager
def as_host(state_dir: Path, host: str = "testhost") -> Iterator[None]:
    with origin.acting("operator:uid=0", host=host, vouch=KeyDir(state_dir / "audit", host).entry_key):
        yield
