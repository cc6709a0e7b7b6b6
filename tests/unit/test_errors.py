"""Every error class carries a documented exit code, and README shows the same table."""

import re

from colibri import errors
from tests.conftest import REPO


def _all_subclasses(cls: type) -> list[type]:
    found = []
    for sub in cls.__subclasses__():
        found.append(sub)
        found.extend(_all_subclasses(sub))
    return found


def test_every_error_has_a_documented_code() -> None:
    classes = [errors.ColibriError, *_all_subclasses(errors.ColibriError)]
    assert len(classes) > 20
    for cls in classes:
        assert cls.exit_code in errors.EXIT_CODES, cls
        assert cls.exit_code not in (0, 2), cls  # 2 belongs to typer's usage errors


def test_codes_match_the_class_families() -> None:
    assert errors.TenantNotFound("x").exit_code == 4
    assert errors.TenantExists("x").exit_code == 5
    assert errors.InvalidTenantId("x").exit_code == 7
    assert errors.SchemaTooNew("x").exit_code == 15
    assert errors.VaultLocked("x").exit_code == 12


def test_readme_exit_code_table_matches() -> None:
    readme = (REPO / "README.md").read_text()
    rows = dict(re.findall(r"^\| (\d+) \| ([^|]+?) \|$", readme, flags=re.MULTILINE))
    assert {int(code) for code in rows} == set(errors.EXIT_CODES)
    for code, text in errors.EXIT_CODES.items():
        assert rows[str(code)] == text
