"""review9 F3: a new adoption's record takes over an earlier, unfinished one of the same jail."""

from pathlib import Path

from colibri.services.lifecycle.adoption import Adoption


def test_an_unfinished_adoption_is_merged_not_overwritten(tmp_path: Path) -> None:
    first = Adoption("demo", "demo", was_running=False, handlers=["echo"], created_dirs=["/var", "/var/run"])
    first.enabled_mother, first.started_jail, first.prior_uid_base, first.claimed_ids = True, True, None, True
    first.save(tmp_path)
    again = Adoption("demo", "demo", was_running=True, handlers=["echo", "ls"], created_dirs=["/opt"])
    merged = again.merged(Adoption.path(tmp_path, "demo"))
    assert merged.created_dirs == ["/var", "/var/run", "/opt"]
    assert merged.handlers == ["echo", "ls"]
    assert (merged.was_running, merged.enabled_mother, merged.started_jail) == (False, True, True)
    assert (merged.prior_uid_base, merged.claimed_ids) == (None, True)


def test_without_an_earlier_record_it_is_itself(tmp_path: Path) -> None:
    record = Adoption("demo", "demo", was_running=True)
    assert record.merged(Adoption.path(tmp_path, "demo")) is record
