"""The daemon's log shows what a tenant sent escaped: no terminal sequence, no forged line."""

import io
import logging

from colibri.daemon.logfilter import SafeFormatter


def _format(message: str, *args: object, exc: bool = False) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(SafeFormatter("%(levelname)s %(message)s"))
    log = logging.getLogger("colibri.test-escaping")
    log.propagate = False
    log.addHandler(handler)
    try:
        if exc:
            try:
                raise ValueError(message % args)
            except ValueError:
                log.exception("failed")
        else:
            log.warning(message, *args)
    finally:
        log.removeHandler(handler)
    return stream.getvalue()


def test_a_tenant_string_cannot_drive_the_terminal_or_forge_a_line() -> None:
    hostile = "x\x1b]0;owned\x07\nERROR colibri daemon stopped\x9b2J\u202egnp.exe"
    line = _format("agent %s registered", hostile)
    assert line.count("\n") == 1  # one record, one line
    assert "\x1b" not in line and "\x9b" not in line and "\u202e" not in line
    assert "\\x1b]0;owned\\x07\\nERROR colibri daemon stopped\\x9b2J\\u202egnp.exe" in line


def test_a_traceback_keeps_its_lines_but_escapes_them() -> None:
    text = _format("bad \x1b[31m%s", "value", exc=True)
    assert "Traceback (most recent call last):" in text and text.count("\n") > 2
    assert "\x1b" not in text and "ValueError: bad \\x1b[31mvalue" in text
