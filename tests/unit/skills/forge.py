"""A signing machine and a host for the skills tests: keys, a repository, a trust store."""

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

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

    def resolver(self) -> SkillResolver:
        return SkillResolver(self.repo, self.trust, self.now)
