"""main()'s last resort: an unexpected exception is one line and exit 1; --debug adds the
traceback.  (A reader that goes away, `colibri ... | head`, is click's: exit 1, no traceback.)"""

import os
import subprocess
import sys

import pytest

from colibri.cli import context
from colibri.errors import EXIT_CODES, INTERNAL_ERROR_EXIT
from tests.conftest import REPO, Invoke

BOOM = """
import sys
from colibri.cli import context
from colibri.cli.app import main

def boom(self):
    raise RuntimeError("sk-live-do-not-show")

context.Context.tenants = boom
sys.argv = ["colibri", *sys.argv[1:]]
main()
"""


def _boom(self: context.Context) -> None:
    raise RuntimeError("sk-live-do-not-show")


@pytest.mark.parametrize(
    "exc", [RuntimeError("sk-live-do-not-show"), RecursionError(), KeyError("sk-live-do-not-show")]
)
def test_an_unexpected_exception_is_one_line_and_exit_1(
    invoke: Invoke, monkeypatch: pytest.MonkeyPatch, exc: Exception
) -> None:
    def raise_it(self: context.Context) -> None:
        raise exc

    monkeypatch.setattr(context.Context, "tenants", raise_it)
    assert INTERNAL_ERROR_EXIT in EXIT_CODES
    code, out, err = invoke("list-tenants")
    assert (code, out) == (INTERNAL_ERROR_EXIT, "")
    assert err == (
        f"colibri: internal error ({type(exc).__name__}); run it again with --debug for the traceback; "
        "please report it\n"
    )
    code, out, err = invoke("list-tenants", "--json")
    assert code == INTERNAL_ERROR_EXIT and err == "" and '"type": "InternalError"' in out
    code, out, err = invoke("--debug", "list-tenants")
    assert code == INTERNAL_ERROR_EXIT
    assert err.startswith("Traceback (most recent call last):") and err.endswith("please report it\n")


def _colibri(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()}
    return subprocess.run(  # type: ignore[call-overload, no-any-return]
        [sys.executable, "-c", BOOM, *argv], env=env, cwd=REPO, text=True, timeout=60, **kwargs
    )


def test_the_real_main_without_and_with_debug() -> None:
    run = _colibri(["list-tenants"], capture_output=True)
    assert run.returncode == INTERNAL_ERROR_EXIT and run.stdout == ""
    assert run.stderr.count("\n") == 1 and "internal error (RuntimeError)" in run.stderr
    assert "Traceback" not in run.stderr and "sk-live" not in run.stderr
    run = _colibri(["--debug", "list-tenants"], capture_output=True)
    assert run.returncode == INTERNAL_ERROR_EXIT and "Traceback" in run.stderr and "RuntimeError: sk-live" in run.stderr
