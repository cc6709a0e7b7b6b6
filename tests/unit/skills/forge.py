"""A signing machine and a host for the skills tests: keys, a repository, a trust store."""

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from colibri.adapters.skill_repo import DirectoryRepository
from colibri.adapters.skill_trust import TrustStore
from colibri.services.skills import publish
from colibri.services.skills.resolve import SkillResolver
from colibri.supply import keys

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def skill_dir(base: Path, name: str, files: dict[str, str] | None = None) -> Path:
    directory = base / "src" / name
    for rel, text in (files or {"SKILL.md": f"# {name}\n", "handlers/echo": "#!/bin/sh\ncat\n"}).items():
        path = directory / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        if rel.startswith("handlers/"):
            path.chmod(0o755)
    return directory


@dataclass
class Forge:
    base: Path
    root_key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    signing_key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    clock: list[datetime] = field(default_factory=lambda: [NOW])

    def __post_init__(self) -> None:
        self.repo = DirectoryRepository(self.base / "repo")
        self.trust = TrustStore(self.base / "state" / "supply")
        publish.delegate(self.repo, self.root_key, keys.raw_public(self.signing_key), NOW + timedelta(days=365))
        self.trust.pin(keys.public_line(keys.raw_public(self.root_key)).encode())
        self.staging = self.base / "staging"
        self.staging.mkdir()

    def now(self) -> datetime:
        return self.clock[0]

    def bundle(self, name: str, version: str = "1.0.0", files: dict[str, str] | None = None) -> bytes:
        data, _ = publish.build(skill_dir(self.base / version, name, files), name, version, ("echo",))
        return data

    def publish(self, *bundles: bytes, key: Ed25519PrivateKey | None = None, days: int = 30) -> int:
        signer = key or self.signing_key
        pairs = [(data, publish.sign(data, signer)[0]) for data in bundles]
        return publish.publish(self.repo, pairs, signer, self.now(), self.now() + timedelta(days=days))[1]

    def rotate(self, days: int = 90) -> tuple[str, Ed25519PrivateKey]:
        """The signing key leaked: a new one delegated, the old one revoked, the index re-signed by
        the new one (the bundles still carry the old key's signatures).  (old key id, new key)."""
        old = keys.key_id(keys.raw_public(self.signing_key))
        new = Ed25519PrivateKey.generate()
        publish.delegate(self.repo, self.root_key, keys.raw_public(new), self.now() + timedelta(days=days))
        publish.revoke(self.repo, self.root_key, old)
        self.publish(key=new)
        return old, new

    def resolver(self) -> SkillResolver:
        return SkillResolver(self.repo, self.trust, self.now)


def installed_jail(forge: "Forge", base: Path) -> tuple[Any, Path, list[Any]]:
    """A planner on ``forge``'s repository, and a jail root under ``base`` into which it installed
    mother and mail (owned by this process, as the jail's root): what a respawn then plans
    against.  (planner, the jail root, the installed records.)"""
    import os

    from colibri.services.lifecycle.skills import SkillPlanner, install
    from tests.conftest import REPO

    planner = SkillPlanner(forge.resolver(), REPO / "skills", base / "staging-area")
    root = base / "jail"
    root.mkdir()
    first = planner.plan("acme", "paid", ["mail"], [], [], None)
    install(root, first, (os.geteuid(), os.getegid()))
    first.cleanup()
    return planner, root, [w.record for w in first.skills]


def tar_of(members: list[tuple[str, bytes | None, dict[str, object]]], gz: bool = False) -> bytes:
    """A tar of hand-made members (path, body or None for a directory, TarInfo fields to set)."""
    import gzip
    import io
    import tarfile

    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:", format=tarfile.PAX_FORMAT) as tar:
        for path, body, extra in members:
            info = tarfile.TarInfo(path)
            info.mode = 0o644 if body is not None else 0o755
            if body is None and "type" not in extra:
                info.type = tarfile.DIRTYPE
            for key, value in extra.items():
                setattr(info, key, value)
            if body is not None and info.type in (tarfile.REGTYPE, tarfile.AREGTYPE):
                info.size = len(body)
                tar.addfile(info, io.BytesIO(body))
            else:
                tar.addfile(info)
    data = out.getvalue()
    return gzip.compress(data) if gz else data


def manifest_for(name: str, version: str, files: dict[str, bytes], modes: dict[str, int] | None = None) -> bytes:
    import hashlib

    from colibri.supply.manifest import FileEntry, Manifest

    entries = tuple(
        FileEntry(p, len(b), (modes or {}).get(p, 0o644), hashlib.sha256(b).hexdigest())
        for p, b in sorted(files.items())
    )
    return Manifest(name, version, ("echo",), entries).dump()


def put(
    forge: "Forge", name: str, version: str, data: bytes, manifest_bytes: bytes, key: Ed25519PrivateKey | None = None
) -> None:
    """Publish ``data`` as it is (no checks: what a hostile or broken signer could put up)."""
    from colibri.supply import bundle, chain
    from colibri.supply.metadata import MAX_INDEX, Entry, parse_index

    signer = key or forge.signing_key
    import hashlib

    manifest_digest = "sha256:" + hashlib.sha256(manifest_bytes).hexdigest()
    entries: list[Entry] = []
    version_no = 0
    if forge.repo.exists("index.json"):
        index = parse_index(forge.repo.fetch("index.json", MAX_INDEX), None, forge.now())
        version_no = index.version
        entries = [e for vs in index.skills.values() for e in vs.values() if (e.name, e.version) != (name, version)]
    entries.append(Entry(name, version, bundle.digest(data), len(data), manifest_digest, "first-party", ("echo",)))
    forge.repo.write(f"bundles/{name}-{version}.tar", data)
    forge.repo.write(f"bundles/{name}-{version}.tar.sig", chain.signature_document(signer, manifest_bytes))
    publish.reindex(forge.repo, signer, entries, version_no + 1, forge.now() + timedelta(days=30))
