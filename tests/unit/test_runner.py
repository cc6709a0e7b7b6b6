"""ShRunner against real short commands: output bounded, no controlling terminal, exact bytes."""

import json
import os
import pty
import time
from pathlib import Path

import pytest

from colibri.adapters.runner import ShRunner
from colibri.errors import CommandFailed, CommandTimeout

pytestmark = pytest.mark.integration


def _runner(**kwargs: int) -> ShRunner:
    return ShRunner({"PATH": os.environ["PATH"]}, **kwargs)


def test_output_is_kept_byte_for_byte() -> None:
    result = _runner()(["sh", "-c", "printf 'a\\377b\\303\\251'; printf 'err' >&2; exit 3"], ok_codes=(3,))
    assert (result.exit_code, result.stdout, result.stderr) == (3, b"a\xffb\xc3\xa9", b"err")


@pytest.mark.parametrize("stream", ["stdout", "stderr"])
def test_a_command_printing_past_max_output_is_killed_and_fails(stream: str) -> None:
    redirect = "" if stream == "stdout" else " >&2"
    with pytest.raises(CommandFailed, match=f"more than 1048576 bytes on {stream}: output too large"):
        _runner(max_output=1 << 20)(["sh", "-c", f"yes{redirect}"], timeout=30)
    exact = _runner(max_output=1 << 20)(["head", "-c", str(1 << 20), "/dev/zero"])
    assert len(exact.stdout) == 1 << 20


def test_a_command_has_no_controlling_terminal() -> None:
    """Review sibling of the sandbox exec's /dev/tty leak: a command (bastille's jexec, bw) run
    from an operator's terminal inherited it as its controlling terminal."""
    read_end, write_end = os.pipe()
    pid, master = pty.fork()
    if pid == 0:  # a session leader on the pty, like the operator's shell
        os.close(read_end)
        try:
            stat = _runner()(["cat", "/proc/self/stat"]).out
            opened = _runner()(["sh", "-c", "exec 3</dev/tty"], ok_codes=range(256)).exit_code
            with open("/proc/self/stat") as handle:  # the test's own terminal, as a check
                own = handle.read()
            os.write(write_end, json.dumps([stat, opened, own]).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    chunks = []
    while chunk := os.read(read_end, 65536):
        chunks.append(chunk)
    os.waitpid(pid, 0)
    os.close(master)
    stat, opened, own = json.loads(b"".join(chunks))

    def tty_nr(line: str) -> int:
        return int(line.rsplit(")", 1)[1].split()[4])  # field 7

    assert tty_nr(own) != 0, "the test's child has no terminal: it proves nothing"
    assert tty_nr(stat) == 0, "a command run by ShRunner has the operator's terminal as its own"
    assert opened != 0, "a command run by ShRunner opened the operator's terminal"


def test_a_timeout_kills_what_the_command_started(tmp_path: Path) -> None:
    """sh's timeout killed the command's pid only: a child it started ran on."""
    marker = tmp_path / "left"
    script = f"(sleep 2; echo alive > {marker}) & sleep 30"
    with pytest.raises(CommandTimeout):
        _runner()(["sh", "-c", script], timeout=0.5)
    time.sleep(2.5)
    assert not marker.exists(), "a child of a timed-out command ran on"
