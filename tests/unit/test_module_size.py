"""No module in colibri/ over 400 lines (issue 10): one that grows past it is split along its own
seams (as adapters/ssh.py and services/secrets.py were), not trimmed by squeezing lines."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "colibri"
LIMIT = 400

KNOWN_OVER: set[str] = set()
"""Modules over the limit for now, by path from the repository's root; each is still over (else
its line here goes)."""


def line_count(path: Path) -> int:
    """The lines of a file as an editor numbers them (a last line without a newline counts)."""
    return len(path.read_text(encoding="utf-8").splitlines())


def over_limit(package: Path, limit: int = LIMIT) -> dict[str, int]:
    """Every ``*.py`` under ``package`` longer than ``limit`` lines: its path from the package's
    parent -> its line count."""
    return {
        path.relative_to(package.parent).as_posix(): count
        for path in sorted(package.rglob("*.py"))
        if (count := line_count(path)) > limit
    }


def test_every_colibri_module_is_at_most_400_lines() -> None:
    assert len(list(PACKAGE.rglob("*.py"))) > 50  # the walk saw the package
    over = {name: count for name, count in over_limit(PACKAGE).items() if name not in KNOWN_OVER}
    assert not over, "over 400 lines (split each along its seams): " + ", ".join(
        f"{name} ({count} lines)" for name, count in over.items()
    )


def test_a_known_exception_is_still_over_the_limit() -> None:
    """An exception that no longer applies (the module was split, or is gone) is removed from KNOWN_OVER."""
    over = over_limit(PACKAGE)
    stale = sorted(name for name in KNOWN_OVER if name not in over)
    assert not stale, f"no longer over {LIMIT} lines (or gone): remove from KNOWN_OVER: {', '.join(stale)}"


def test_the_count_names_a_module_just_over_the_limit(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "at_limit.py").write_text("x = 1\n" * LIMIT)
    (package / "sub" / "over.py").write_text("x = 1\n" * LIMIT + "y = 2")  # no newline at the end: still a line
    (package / "notes.txt").write_text("x\n" * (LIMIT + 10))  # not a module
    assert over_limit(package) == {"pkg/sub/over.py": LIMIT + 1}
