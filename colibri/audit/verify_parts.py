"""The parts of ``audit verify`` its two checks share: the report, the failure, reading records.

Pure, like the rest of ``colibri.audit``: no settings, no store, no network.
"""

import base64
import json
from dataclasses import dataclass, field
from typing import Any

from colibri.audit import bundle
from colibri.errors import AuditError


@dataclass
class HostReport:
    host: str
    entries: int = 0
    checkpoints: int = 0
    newest_size: int = 0
    newest_time: str = ""
    unsigned: int = 0
    unsigned_since: str | None = None
    cosigned_size: int = 0
    cosigned_by: set[str] = field(default_factory=set)


@dataclass
class Report:
    exported_by: str
    exported_at: str
    hosts: dict[str, HostReport]
    keys: list[str]
    cosignatures: int

    def view(self) -> dict[str, Any]:
        return {
            "ok": True,
            "exported_by": self.exported_by,
            "exported_at": self.exported_at,
            "keys": self.keys,
            "cosignatures": self.cosignatures,
            "hosts": [
                {
                    "host": r.host,
                    "entries": r.entries,
                    "checkpoints": r.checkpoints,
                    "newest_checkpoint_size": r.newest_size,
                    "newest_checkpoint_time": r.newest_time,
                    "unsigned_tail": r.unsigned,
                    "unsigned_since": r.unsigned_since,
                    "cosigned_size": r.cosigned_size,
                    "cosigned_by": sorted(r.cosigned_by),
                }
                for r in self.hosts.values()
            ],
        }


def fail(message: str) -> AuditError:
    return AuditError(f"audit bundle does not verify: {message}")


def read_record(line: bytes, kind: str) -> dict[str, Any]:
    if len(line) > bundle.MAX_RECORD:
        raise fail(f"a {kind} record is too large")
    try:
        value = json.loads(line)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser goes
        raise fail(f"a {kind} record is not JSON") from None
    if not isinstance(value, dict):
        raise fail(f"a {kind} record is not an object")
    return value


def field_text(value: Any, what: str, limit: int = 256) -> str:
    if not isinstance(value, str) or len(value) > limit:
        raise fail(f"{what} is missing or malformed")
    return value


def field_b64(value: Any, what: str) -> bytes:
    try:
        return base64.b64decode(field_text(value, what), validate=True)
    except ValueError:  # binascii.Error, or a non-ASCII str
        raise fail(f"{what} is not base64") from None
