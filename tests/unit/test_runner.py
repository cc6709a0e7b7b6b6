"""ShRunner against real short commands: output bounded, no controlling terminal, exact bytes;
each both through sh and through the reader of a call that may end at a whole answer
(``complete``), and that one's own behaviour: the group is killed once the answer is whole."""

import json
import os
import pty
import time
from pathlib import Path

import pytest

from colibri.adapters.bitwarden_output import json_complete
from colibri.adapters.runner import CommandResult, ShRunner
from colibri.errors import CommandFailed, CommandTimeout, ToolMissing

pytestmark = pytest.mark.integration


def _never(data: bytearray) -> bool:
    return False


class _Runner:
    """ShRunner, called through sh (``until`` False) or through the reader that may stop early."""

    def __init__(self, until: bool, **kwargs: int) -> None:
        self._runner = ShRunner({"PATH": os.environ["PATH"]}, **kwargs)
        self._until = until

    def __call__(self, argv: list[str], **kwargs: object) -> CommandResult:
        if self._until:
            kwargs.setdefault("complete", _never)
        return self._runner(argv, **kwargs)  # type: ignore[arg-type]


MODES = pytest.mark.parametrize("until", [False, True], ids=["sh", "until"])


def _runner(until: bool = False, **kwargs: int) -> _Runner:
    return _Runner(until, **kwargs)


@MODES
def test_output_is_kept_byte_for_byte(until: bool) -> None:
    result = _runner(until)(["sh", "-c", "printf 'a\\377b\\303\\251'; printf 'err' >&2; exit 3"], ok_codes=(3,))
    assert (result.exit_code, result.stdout, result.stderr) == (3, b"a\xffb\xc3\xa9", b"err")
    assert not result.stopped


@MODES
@pytest.mark.parametrize("stream", ["stdout", "stderr"])
def test_a_command_printing_past_max_output_is_killed_and_fails(stream: str, until: bool) -> None:
    redirect = "" if stream == "stdout" else " >&2"
    with pytest.raises(CommandFailed, match=f"more than 1048576 bytes on {stream}: output too large"):
        _runner(until, max_output=1 << 20)(["sh", "-c", f"yes{redirect}"], timeout=30)
    exact = _runner(until, max_output=1 << 20)(["head", "-c", str(1 << 20), "/dev/zero"])
    assert len(exact.stdout) == 1 << 20


@MODES
def test_stdin_is_given_and_a_failure_keeps_stderr_only_when_not_secret(until: bool) -> None:
    data = bytes(range(256)) * 1024  # more than a pipe holds: written while the output is read
    assert _runner(until)(["cat"], stdin=data).stdout == data
    with pytest.raises(CommandFailed, match=r"exit status 4: sh -c .*: why") as info:
        _runner(until)(["sh", "-c", "echo why >&2; exit 4"])
    assert info.value.__cause__ is None
    with pytest.raises(CommandFailed) as info:
        _runner(until)(["sh", "-c", "echo s''ecret >&2; exit 4"], secret_output=True)
    assert "secret" not in str(info.value)
    with pytest.raises(ToolMissing):
        _runner(until)(["/nonexistent/colibri-no-such-program"])


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_a_whole_answer_ends_the_command_and_what_it_started(tmp_path: Path) -> None:
    """bw idles ~2 s after its answer: ``complete`` ends it (its whole group) once the answer is
    whole, and says so (``stopped``, exit status 0)."""
    pids = tmp_path / "pids"
    script = (
        f"sleep 600 & echo $! > {pids}; echo $$ >> {pids}; "
        "printf '[{\"a\": \"]\"}'; sleep 0.2; printf ', 2'; sleep 0.2; printf ']'; sleep 600"
    )
    seen: list[bytes] = []

    def complete(data: bytearray) -> bool:
        seen.append(bytes(data))
        return json_complete(data)

    result = ShRunner({"PATH": os.environ["PATH"]})(["sh", "-c", script], timeout=60, complete=complete)
    assert (result.stopped, result.exit_code, result.stdout) == (True, 0, b'[{"a": "]"}, 2]')
    assert len(seen) >= 2 and seen[-1] == result.stdout  # the answer's parts came in separately
    for pid in map(int, pids.read_text().split()):
        assert _wait(lambda pid=pid: _gone(pid)), f"process {pid} of the stopped command is still running"


def _wait(check: object, bound: float = 20.0) -> bool:
    end = time.monotonic() + bound
    while not check():  # type: ignore[operator]
        if time.monotonic() > end:
            return False
        time.sleep(0.05)
    return True


def test_an_answer_that_never_completes_runs_to_its_end_or_its_timeout(tmp_path: Path) -> None:
    runner = ShRunner({"PATH": os.environ["PATH"]})
    result = runner(["sh", "-c", "printf '[1, 2'"], complete=json_complete)
    assert (result.stopped, result.exit_code, result.stdout) == (False, 0, b"[1, 2")
    marker, pids = tmp_path / "left", tmp_path / "pids"
    with pytest.raises(CommandTimeout):
        runner(
            ["sh", "-c", f"printf '[1'; (sleep 2; echo alive > {marker}) & echo $! > {pids}; sleep 30"],
            timeout=0.5,
            complete=json_complete,
        )
    child = int(pids.read_text())  # gone at once when killed; alive 2 s, then the marker, when not
    assert _wait(lambda: _gone(child)), f"the child {child} of a timed-out command is still running"
    assert not marker.exists(), "a child of a timed-out command ran on"


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
            stat_until = _runner(True)(["cat", "/proc/self/stat"]).out
            opened_until = _runner(True)(["sh", "-c", "exec 3</dev/tty"], ok_codes=range(256)).exit_code
            with open("/proc/self/stat") as handle:  # the test's own terminal, as a check
                own = handle.read()
            os.write(write_end, json.dumps([stat, opened, own, stat_until, opened_until]).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    chunks = []
    while chunk := os.read(read_end, 65536):
        chunks.append(chunk)
    os.waitpid(pid, 0)
    os.close(master)
    stat, opened, own, stat_until, opened_until = json.loads(b"".join(chunks))

    def tty_nr(line: str) -> int:
        return int(line.rsplit(")", 1)[1].split()[4])  # field 7

    assert tty_nr(own) != 0, "the test's child has no terminal: it proves nothing"
    assert tty_nr(stat) == 0, "a command run by ShRunner has the operator's terminal as its own"
    assert opened != 0, "a command run by ShRunner opened the operator's terminal"
    assert tty_nr(stat_until) == 0 and opened_until != 0, "the reader that may stop early leaks the terminal"


def test_a_timeout_kills_what_the_command_started(tmp_path: Path) -> None:
    """sh's timeout killed the command's pid only: a child it started ran on."""
    marker, pids = tmp_path / "left", tmp_path / "pids"
    script = f"(sleep 2; echo alive > {marker}) & echo $! > {pids}; sleep 30"
    with pytest.raises(CommandTimeout):
        _runner()(["sh", "-c", script], timeout=0.5)
    child = int(pids.read_text())  # gone at once when killed; alive 2 s, then the marker, when not
    assert _wait(lambda: _gone(child)), f"the child {child} of a timed-out command is still running"
    assert not marker.exists(), "a child of a timed-out command ran on"
