"""The bastille emulator's record of a running jail (state.py ``run_dir/NAME.json``) is read by every
emulated ``jls``, ``mount -p`` and ``bastille`` process while another may rewrite it (a live mount
adds its nullfs line).  A reader that found it half-written took the jail for dead and deleted its
record: under load, one of six concurrent spawns then failed its live-mount check
(test_bastille_faults.py::test_six_concurrent_spawns_get_distinct_ips, "is not mounted ... nothing
was kept").  The record is replaced whole, never truncated in place.
"""

import multiprocessing
import os
from pathlib import Path

import pytest

from tests.emulators.bastille import state


def _layout(base: Path) -> state.Layout:
    layout = state.Layout({"bastille_prefix": str(base)})
    layout.run_dir.mkdir(parents=True)
    layout.jids_dir.mkdir(parents=True)
    return layout


def _rewrite(base: str, info: dict[str, object], rounds: int) -> None:
    layout = state.Layout({"bastille_prefix": base})
    for n in range(rounds):
        info["nullfs"] = [[f"/src/{k}", f"/dst/{k}", "rw"] for k in range(n % 50)]  # a record of changing size
        state.update_table(layout, "ant", info)


def test_a_reader_never_sees_a_record_half_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BASTILLE_EMU_STATE_DIR", raising=False)  # the records under tmp_path
    layout = _layout(tmp_path)
    info: dict[str, object] = {"pid": os.getpid(), "starttime": state._proc_starttime(os.getpid()), "nullfs": []}
    state.update_table(layout, "ant", info)
    (layout.jids_dir / "ant").write_text("1\n")
    writer = multiprocessing.get_context("fork").Process(target=_rewrite, args=(str(tmp_path), info, 3000))
    writer.start()
    try:
        reads = 0
        while writer.is_alive() or reads == 0:
            assert state.run_info(layout, "ant") is not None, f"read {reads}: the running jail's record was dropped"
            reads += 1
    finally:
        writer.join(60)
    assert writer.exitcode == 0
    assert (layout.jids_dir / "ant").exists() and state.run_info(layout, "ant") is not None
