"""Replaying the outbox (issue 11): the completions this daemon acknowledged while the database was
down (colibri/daemon/outbox.py), written through the ordinary completion rule when it answers again.

Each record carries the lease (and the fence) its agent answered with, so one whose task was
rescued meanwhile (its host declared lost, the task run elsewhere) is refused by the same rule as
a late answer: logged, dropped, never applied twice.
"""

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from colibri.daemon.dispatcher import Dispatcher
from colibri.daemon.logfilter import about
from colibri.daemon.metrics import Metrics
from colibri.daemon.outbox import Outbox, owner_of
from colibri.errors import ColibriError, NotFound, StateConflict, StoreError
from colibri.services.hive.rules import Scope
from colibri.services.hive.service import HiveService

log = logging.getLogger("colibri.daemon")
Db = Callable[..., Awaitable[Any]]


class Replay:
    def __init__(
        self, outbox: Outbox, db: Db, hive: Callable[[], HiveService], metrics: Metrics, dispatcher: Dispatcher
    ) -> None:
        self._outbox, self._db, self._hive = outbox, db, hive
        self._metrics, self._dispatcher = metrics, dispatcher

    async def run(self) -> None:
        """Every record, the owners (tenants, lanes) taken in turn and each one's records in their
        order, so one tenant's thousands do not hold another's one (review R5); those done are
        dropped from the file even if a later one fails (StoreError: the database went away
        again; the rest waits for the next run)."""
        if not len(self._outbox):
            return
        records, done = self._outbox.records(), set[int]()
        try:
            for index in in_turns(records):
                await self._one(records[index])
                done.add(index)
        finally:
            if done:
                self._outbox.drop(done)

    async def _one(self, record: dict[str, Any]) -> None:
        try:
            kind, name = record["scope"]
            args = (Scope(kind, name), str(record["agent"]), int(record["task"]), str(record["lease"]),
                    bool(record["ok"]), record.get("result"), record.get("error"),
                    record.get("exit_status"), _fence(record.get("fence")))  # fmt: skip
        except (KeyError, TypeError, ValueError):
            log.warning("outbox: a malformed record was dropped")
            return
        try:
            task = await self._db(self._hive().finish, *args)
        except (StateConflict, NotFound) as exc:
            self._metrics.inc("colibri_outbox_replayed_total", outcome="refused")
            log.warning("outbox: the completion of task %d by %s was refused (rescued meanwhile): %s", args[2],
                        args[1], exc, extra=about(name))  # fmt: skip
            return
        except StoreError:
            raise
        except ColibriError as exc:
            self._metrics.inc("colibri_outbox_replayed_total", outcome="refused")
            log.warning("outbox: the completion of task %d was refused: %s", args[2], exc)
            return
        self._metrics.inc("colibri_outbox_replayed_total", outcome="ok")
        self._metrics.inc("colibri_tasks_finished_total", outcome=task["state"])
        self._dispatcher.finished(task["id"])
        log.info("outbox: task %d completed (acknowledged while the database was down)", task["id"])


def in_turns(records: Sequence[dict[str, Any]]) -> list[int]:
    """The positions of ``records`` taken one owner at a time in turn (owners in the order of
    their first record), each owner's in their own order."""
    seen: dict[str, int] = {}  # owner -> records of it so far
    first: dict[str, int] = {}  # owner -> its place among the owners
    keys: list[tuple[int, int, int]] = []
    for index, record in enumerate(records):
        owner = owner_of(record)
        turn = seen.get(owner, 0)
        seen[owner] = turn + 1
        keys.append((turn, first.setdefault(owner, len(first)), index))
    return [index for _, _, index in sorted(keys)]


def _fence(value: Any) -> int | None:
    """A record's fencing token: a positive int, else none (a record from before fences)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None
