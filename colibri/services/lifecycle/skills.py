"""The skills a spawn puts in a tenant's jail (issue 13): planned before anything is created.

``SkillPlanner.plan`` decides the tenant's whole set before the pipeline touches a jail: the
mother (the repository's signed ``mother`` when a repository is configured and a root pinned,
else colibri's shipped ``skills/mother``, recorded with source ``builtin``: the development
default) and every ``--skill`` (or, without ``--skill``, the set recorded for the tenant).  A
skill already installed with the recorded digests is checked in the jail (its manifest and every
file against it, nothing else in its directory), not fetched; the rest go through the resolver
(part S1: signature, pinned root, tier, another tenant's name), which verifies them into a
staging directory.  A refusal raises SupplyError (exit 22) before any jail exists, so nothing is
created.  ``install`` then copies each verified skill to ``/usr/local/share/colibri/skills/<name>/``
in the jail, root-owned (the jail's root) and not writable by the jail's user.
"""

import contextlib
import hashlib
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from colibri import __version__
from colibri.adapters import jailfs
from colibri.domain import FIRST_PARTY_SOURCES, NAME, Tier
from colibri.errors import InvalidInput, JailError, SupplyError, SupplyUnavailable, TierRefused
from colibri.services.skills.resolve import SkillRef, SkillResolver, clash
from colibri.store.skills import Installed
from colibri.supply import bundle
from colibri.supply import manifest as mf

SKILLS_ROOT = "/usr/local/share/colibri/skills"
"""Where every installed skill lives in a jail: ``<SKILLS_ROOT>/<name>/`` (layout.SKILL_DIR is the mother's)."""
MOTHER_SKILL = "mother"
BUILTIN = "builtin"
MAX_SKILL_FILE = 16 << 20


@dataclass(frozen=True)
class JailTree:
    """A jail's root directory and its root user's (uid, gid) as the host sees them: who owns an
    installed skill (a sandbox jail's root is not the host's root)."""

    root: Path
    owner: tuple[int, int]


@dataclass(frozen=True)
class Wanted:
    """One skill of the tenant's set after this spawn: its record, and where its verified files are
    staged (None: already installed in the jail as recorded, and checked there)."""

    record: Installed
    staged: Path | None


@dataclass
class SkillPlan:
    skills: list[Wanted] = field(default_factory=list)
    remove: list[str] = field(default_factory=list)  # recorded names no longer in the set
    staging: Path | None = None

    def provider(self, capability: str) -> str | None:
        """The skill whose handlers provide ``capability`` (the mother's first)."""
        for wanted in sorted(self.skills, key=lambda w: w.record.name != MOTHER_SKILL):
            if capability in wanted.record.capabilities:
                return wanted.record.name
        return None

    def identity_entries(self) -> list[dict[str, object]]:
        """What the mother's identity says of each installed skill (it reports what it read)."""
        return [
            {
                "name": w.record.name,
                "version": w.record.version,
                "capabilities": list(w.record.capabilities),
                "dir": f"{SKILLS_ROOT}/{w.record.name}",
            }
            for w in self.skills
        ]

    def cleanup(self) -> None:
        if self.staging is not None:
            shutil.rmtree(self.staging, ignore_errors=True)
            self.staging = None


class SkillPlanner:
    def __init__(self, resolver: SkillResolver | None, shipped: Path, staging_parent: Path) -> None:
        self._resolver = resolver
        self._shipped = shipped  # colibri's skills directory: its mother/ is the builtin one
        self._staging_parent = staging_parent

    def repository(self) -> bool:
        return self._resolver is not None and self._resolver.available()

    def plan(
        self,
        tenant_id: str,
        tier: str,
        asked: Sequence[str] | None,
        installed: Sequence[Installed],
        other_tenants: Sequence[str],
        jail: JailTree | None,
    ) -> SkillPlan:
        """The tenant's skill set for this spawn, everything fetched verified and staged, or a
        SupplyError (exit 22) naming the skill and why.  ``asked``: the ``--skill`` values (None:
        the recorded set again)."""
        recorded = {s.name: s for s in installed}
        if asked is not None:
            refs = [SkillRef.parse(text) for text in asked]
        else:
            refs = [SkillRef(s.name, s.version) for s in installed if s.name != MOTHER_SKILL]
        mother = next((r for r in refs if r.name == MOTHER_SKILL), None)
        refs = [r for r in refs if r.name != MOTHER_SKILL]
        if len({r.name for r in refs}) != len(refs):
            raise SupplyError("a skill is asked for twice")
        use_repo = self.repository()
        if mother is None and use_repo:
            kept = recorded.get(MOTHER_SKILL)
            mother = SkillRef(MOTHER_SKILL, kept.version if kept and kept.source != BUILTIN else None)
        plan = SkillPlan()
        fetch: list[SkillRef] = []
        keep: dict[str, Installed] = {}
        wanted_refs = [mother, *refs] if mother is not None else refs
        for ref in wanted_refs:  # installed as recorded, and intact in the jail: kept unless unvouched
            kept = recorded.get(ref.name)
            if kept is not None and kept.source != BUILTIN and ref.version in (None, kept.version):
                _may_keep(tenant_id, tier, kept, other_tenants)
                if jail is not None and intact(jail, kept):
                    keep[ref.name] = kept
        if keep and self._resolver is not None:  # held to today's keys and allow-list (review13 F3)
            for name in self._resolver.unvouched(list(keep.values())):
                del keep[name]
        for ref in wanted_refs:
            if ref.name in keep:
                plan.skills.append(Wanted(keep[ref.name], None))
            else:
                fetch.append(ref)
        try:
            if fetch or not use_repo:
                parent = self._staging_dir(tenant_id)
                plan.staging = Path(tempfile.mkdtemp(prefix=f"{tenant_id}.", dir=parent))
            if fetch:
                assert plan.staging is not None
                if self._resolver is None:
                    raise SupplyUnavailable(
                        "no skills repository is configured (skills_repository): new skills cannot be installed"
                    )
                try:
                    verified = self._resolver.resolve(
                        fetch, tier=tier, other_tenants=other_tenants, staging=plan.staging
                    )
                except SupplyUnavailable as exc:  # say which skills it blocks
                    raise SupplyUnavailable(f"cannot install {', '.join(map(str, fetch))}: {exc.message}") from None
                for skill in verified:
                    record = Installed(skill.name, skill.version, skill.digest, skill.source, skill.capabilities,
                                       manifest_digest(skill.root))  # fmt: skip
                    plan.skills.append(Wanted(record, skill.root))
            if not use_repo:
                plan.skills.insert(0, self._builtin(recorded.get(MOTHER_SKILL), jail, plan.staging))
        except BaseException:
            plan.cleanup()
            raise
        wanted = {w.record.name for w in plan.skills}
        plan.remove = sorted(name for name in recorded if name not in wanted)
        return plan

    def _staging_dir(self, tenant_id: str) -> Path:
        """The staging parent, without what a killed spawn of this tenant left there: a plan is made
        under the tenant's agent lock (pipeline.py), so no other spawn of it is using one (a tenant
        id holds no '.', so ``<tenant>.`` is this tenant's prefix alone)."""
        self._staging_parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        for left in self._staging_parent.glob(f"{tenant_id}.*"):
            shutil.rmtree(left, ignore_errors=True)
        return self._staging_parent

    def _builtin(self, kept: Installed | None, jail: JailTree | None, staging: Path | None) -> Wanted:
        """colibri's shipped mother (no repository configured): bundled here as a build would,
        so it is recorded with its digests like any other skill, source ``builtin``."""
        assert staging is not None
        source = self._shipped / MOTHER_SKILL
        if not (source / "mother.py").is_file():
            raise InvalidInput(f"colibri's mother skill is missing: no {source / 'mother.py'} (setting skills_dir)")
        clean = staging / ".builtin"
        shutil.copytree(source, clean, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
        handlers = clean / "handlers"
        caps = tuple(sorted(p.name for p in handlers.iterdir() if p.is_file() and NAME.fullmatch(p.name))) if (
            handlers.is_dir()
        ) else ()  # fmt: skip
        data, _ = bundle.build(clean, MOTHER_SKILL, __version__, caps)
        unpacked = bundle.unpack(data, MOTHER_SKILL)
        shutil.rmtree(clean)
        record = Installed(MOTHER_SKILL, __version__, bundle.digest(data), BUILTIN, caps,
                           "sha256:" + hashlib.sha256(unpacked.manifest_bytes).hexdigest())  # fmt: skip
        if kept == record and jail is not None and intact(jail, kept):
            return Wanted(kept, None)
        bundle.extract(unpacked, staging / MOTHER_SKILL)
        return Wanted(record, staging / MOTHER_SKILL)


def _may_keep(tenant_id: str, tier: str, kept: Installed, other_tenants: Sequence[str]) -> None:
    """An installed skill kept again is held to today's rules: its tier, other tenants' names."""
    if tier != Tier.COMMUNITY and kept.source not in FIRST_PARTY_SOURCES:
        raise TierRefused(f"skill {kept.name} is a community skill: a paid tenant gets first-party skills only")
    other = clash(kept.name, [t for t in other_tenants if t != tenant_id])
    if other is not None and kept.name != MOTHER_SKILL:
        raise TierRefused(f"skill {kept.name} is named like tenant {other}'s private space: refused")


def manifest_digest(directory: Path) -> str:
    return "sha256:" + hashlib.sha256((directory / mf.MANIFEST).read_bytes()).hexdigest()


def intact(jail: JailTree, kept: Installed) -> bool:
    """Is the skill in the jail exactly as recorded: its manifest's digest, every file it lists
    (size, mode, sha256), nothing else in its directory, no symlink anywhere, every directory and
    file owned by the jail's root (one the jail's user owns it could change after this check)?
    Reads only."""
    rel = f"{SKILLS_ROOT}/{kept.name}"
    try:
        raw = jailfs.read_regular(jail.root, f"{rel}/{mf.MANIFEST}", mf.MAX_MANIFEST)
        if "sha256:" + hashlib.sha256(raw).hexdigest() != kept.manifest_digest:
            return False
        manifest = mf.parse(raw, f"skill {kept.name}")
        files = {f.path: f for f in manifest.files}
        found = dict(_walk(jail, rel, ""))
        if set(found) != set(files) | {mf.MANIFEST}:
            return False
        for path, entry in files.items():
            if found[path] != entry.mode:
                return False
            body = jailfs.read_regular(jail.root, f"{rel}/{path}", MAX_SKILL_FILE)
            if len(body) != entry.size or hashlib.sha256(body).hexdigest() != entry.sha256:
                return False
    except (JailError, SupplyError, OSError):
        return False
    return True


MAX_SKILL_DEPTH = 64
"""The deepest directory an installed skill may hold (a manifest path is at most 1,024 bytes)."""


def _walk(jail: JailTree, rel: str, prefix: str) -> Iterator[tuple[str, int]]:
    """(path, mode) of each regular file under ``jail.root/rel``; JailError for anything else there
    (a symlink, a device, a hard link, a directory others can write, anything not the jail root's,
    a tree deeper than MAX_SKILL_DEPTH or holding more than the manifest's most files).  A loop,
    not a recursion: the jail's root decides how deep the tree is."""
    pending, seen = [(rel, prefix, 0)], 0
    while pending:
        here, under, depth = pending.pop()
        if depth > MAX_SKILL_DEPTH:
            raise JailError(f"{rel} is deeper than {MAX_SKILL_DEPTH} directories")
        with jailfs.open_dir(jail.root, here) as fd:
            st = os.fstat(fd)
            if st.st_mode & 0o022:
                raise JailError(f"{here} is writable by others")
            if (st.st_uid, st.st_gid) != jail.owner:
                raise JailError(f"{here} is not owned by the jail's root")
            names = sorted(os.listdir(fd))
            seen += len(names)
            if seen > mf.MAX_FILES + MAX_SKILL_DEPTH:
                raise JailError(f"{rel} holds more entries than a skill may")
            kinds = {n: os.stat(n, dir_fd=fd, follow_symlinks=False) for n in names}
        for name in names:
            info = kinds[name]
            path = f"{under}{name}"
            if stat.S_ISDIR(info.st_mode):
                pending.append((f"{here}/{name}", f"{path}/", depth + 1))
            elif stat.S_ISREG(info.st_mode) and info.st_nlink == 1 and (info.st_uid, info.st_gid) == jail.owner:
                yield path, stat.S_IMODE(info.st_mode)
            else:
                raise JailError(f"{here}/{name} is not a regular file of the jail's root")


def install(root: Path, plan: SkillPlan, owner: tuple[int, int]) -> None:
    """Copy each staged skill into the jail (its old directory taken out first, nothing in the
    jail followed), owned by the jail's root, not writable by the jail's user; take out the
    skills no longer in the set."""
    with jailfs.open_dir(root, SKILLS_ROOT, create=True, owner=owner):
        pass
    for name in plan.remove:
        jailfs.remove(root, f"{SKILLS_ROOT}/{name}", tree=True)
    for wanted in plan.skills:
        if wanted.staged is None:
            continue
        rel = f"{SKILLS_ROOT}/{wanted.record.name}"
        jailfs.remove(root, rel, tree=True)
        jailfs.copy_tree(wanted.staged, root, rel, owner=owner)


@contextlib.contextmanager
def staged(plan: SkillPlan) -> Iterator[SkillPlan]:
    """The plan while the pipeline runs; its staging directory removed afterwards."""
    try:
        yield plan
    finally:
        plan.cleanup()


def identity_skills(plan: SkillPlan | None) -> str:
    return json.dumps(plan.identity_entries() if plan else [])
