"""A bundle's reader on damaged input: every mutation is refused as BundleRefused (or, where it
hits padding, read as the same files), never another exception; gzip's edge cases."""

import gzip
import random
from pathlib import Path

import pytest

from colibri.errors import BundleRefused
from colibri.services.skills import publish
from colibri.supply import bundle
from tests.unit.skills.forge import skill_dir


@pytest.fixture(name="good", scope="module")
def good_fixture(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    data, _ = publish.build(skill_dir(tmp_path_factory.mktemp("fuzz"), "mail"), "mail", "1.0.0", ("echo",))
    return data


@pytest.mark.parametrize("packed", [False, True])
def test_mutations_are_refused_or_harmless(good: bytes, packed: bool) -> None:
    reference = bundle.unpack(good, "mail").files
    rng = random.Random(13)
    refused = 0
    original = gzip.compress(good) if packed else good
    for _ in range(400):
        data = bytearray(original)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        if rng.random() < 0.2:
            data = data[: rng.randrange(len(data))]
        try:
            assert bundle.unpack(bytes(data), "mail").files == reference
        except BundleRefused:
            refused += 1
    assert refused > 100


def test_gzip_edge_cases(good: bytes) -> None:
    packed = gzip.compress(good)
    assert bundle.unpack(packed, "mail").manifest.name == "mail"
    with pytest.raises(BundleRefused, match="cut short"):
        bundle.unpack(packed[:-12], "mail")
    with pytest.raises(BundleRefused, match="data after the gzip stream"):
        bundle.unpack(packed + gzip.compress(b"more"), "mail")
    with pytest.raises(BundleRefused, match="not a valid gzip stream"):
        bundle.unpack(b"\x1f\x8b" + b"\0" * 64, "mail")
    with pytest.raises(BundleRefused):
        bundle.unpack(b"", "mail")


def test_build_refuses_what_a_bundle_may_not_hold(tmp_path: Path) -> None:
    source = skill_dir(tmp_path, "mail")
    (source / "link").symlink_to("/etc/passwd")
    with pytest.raises(BundleRefused, match="not a regular file"):
        publish.build(source, "mail", "1.0.0", ())
    (source / "link").unlink()
    (source / ".git").mkdir()
    (source / ".git" / "config").write_text("x")
    with pytest.raises(BundleRefused, match="character skills may not use"):
        publish.build(source, "mail", "1.0.0", ())
