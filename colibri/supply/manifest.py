"""A skill's name, version and manifest (issue 13): the rules, pure.

A skill name follows the tenant-id-like rule (lowercase ASCII letters, digits and '-', starting
and ending with a letter or digit, at most 63); a version is ``MAJOR.MINOR.PATCH`` (digits, each
at most 9), ordered numerically.  The manifest (``<name>/MANIFEST.json`` in the bundle, canonical
JSON) names the skill, its version, the capabilities it provides (S2 maps one to
``handlers/<capability>``) and every file beside it: path (relative to the skill directory),
size, mode and sha256.  The manifest's own bytes are what a signing key signs.
"""

import re
from dataclasses import dataclass
from typing import Any

from colibri.domain import NAME
from colibri.errors import BundleRefused, SupplyError
from colibri.supply import docs

NAME_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?", re.ASCII)
VERSION_RE = re.compile(r"(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})", re.ASCII)
COMPONENT = re.compile(r"[A-Za-z0-9_@+=,-][A-Za-z0-9_.@+=,-]{0,254}", re.ASCII)
"""One path component of a skill's file: no '/', no control or shell-special character, not '.'
or '..' (a component may not start with '.', so no hidden files either), at most 255 bytes."""
MANIFEST = "MANIFEST.json"
MAX_MANIFEST = 1 << 20
MAX_PATH = 1024
MAX_FILES = 512
MAX_CAPABILITIES = 64
MODES = (0o644, 0o755, 0o444, 0o555, 0o600, 0o700)
FORMAT = 1


def shown(value: object) -> str:
    text = value if isinstance(value, str) else repr(value)
    text = text.encode("unicode_escape").decode("ascii")
    return text[:64] + ("..." if len(text) > 64 else "")


def check_name(value: object) -> str:
    if not isinstance(value, str) or not NAME_RE.fullmatch(value):
        raise SupplyError(
            f"invalid skill name '{shown(value)}': use 1-63 lowercase letters, digits and '-' (not at either end)"
        )
    return value


def check_version(value: object, name: str = "") -> str:
    if not isinstance(value, str) or not VERSION_RE.fullmatch(value):
        where = f"skill {name}: " if name else ""
        raise SupplyError(f"{where}invalid version '{shown(value)}': use MAJOR.MINOR.PATCH (digits)")
    return value


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def check_path(value: object, name: str) -> str:
    """A file's path relative to the skill directory (BundleRefused naming why)."""
    if not isinstance(value, str) or not value:
        raise BundleRefused(f"skill {name}: a file path is empty or not text")
    if len(value.encode()) > MAX_PATH:
        raise BundleRefused(f"skill {name}: path {shown(value)} is longer than {MAX_PATH} bytes")
    if value.startswith("/"):
        raise BundleRefused(f"skill {name}: absolute path {shown(value)}")
    for part in value.split("/"):
        if part in ("", ".", ".."):
            raise BundleRefused(f"skill {name}: path {shown(value)} escapes or is not plain ('{part}')")
        if len(part.encode()) > 255:
            raise BundleRefused(f"skill {name}: a name in {shown(value)} is longer than 255 bytes")
        if not COMPONENT.fullmatch(part):
            raise BundleRefused(f"skill {name}: path {shown(value)} holds a character skills may not use")
    return value


@dataclass(frozen=True)
class FileEntry:
    path: str
    size: int
    mode: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    name: str
    version: str
    capabilities: tuple[str, ...]
    files: tuple[FileEntry, ...]

    def document(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "name": self.name,
            "version": self.version,
            "capabilities": list(self.capabilities),
            "files": [{"path": f.path, "size": f.size, "mode": f.mode, "sha256": f.sha256} for f in self.files],
        }

    def dump(self) -> bytes:
        return docs.dump(self.document())


def check_capabilities(value: object, name: str) -> tuple[str, ...]:
    if not isinstance(value, list) or len(value) > MAX_CAPABILITIES:
        raise BundleRefused(f"skill {name}: capabilities must be a list of at most {MAX_CAPABILITIES}")
    found: list[str] = []
    for item in value:
        if not isinstance(item, str) or not NAME.fullmatch(item) or item in found:
            raise BundleRefused(f"skill {name}: invalid or repeated capability {shown(item)}")
        found.append(item)
    return tuple(found)


def parse(data: bytes, what: str) -> Manifest:
    """A manifest from its bytes, which must be canonical (what was signed is what is read)."""
    try:
        doc = docs.load(data, MAX_MANIFEST, what)
    except SupplyError as exc:
        raise BundleRefused(exc.message) from None
    if doc.get("format") != FORMAT:
        raise BundleRefused(f"{what}: unknown manifest format {shown(doc.get('format'))}")
    try:
        name = check_name(doc.get("name"))
        version = check_version(doc.get("version"), name)
    except SupplyError as exc:
        raise BundleRefused(f"{what}: {exc.message}") from None
    capabilities = check_capabilities(doc.get("capabilities"), name)
    files = doc.get("files")
    if not isinstance(files, list) or len(files) > MAX_FILES:
        raise BundleRefused(f"skill {name}: the manifest lists more than {MAX_FILES} files (or none as a list)")
    entries: list[FileEntry] = []
    seen: set[str] = set()
    for item in files:
        if not isinstance(item, dict) or set(item) != {"path", "size", "mode", "sha256"}:
            raise BundleRefused(f"skill {name}: a manifest file entry is not {{path, size, mode, sha256}}")
        path = check_path(item["path"], name)
        size, mode, digest = item["size"], item["mode"], item["sha256"]
        if path == MANIFEST or path in seen:
            raise BundleRefused(f"skill {name}: {shown(path)} is listed twice")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise BundleRefused(f"skill {name}: {shown(path)} has no valid size")
        if mode not in MODES:
            raise BundleRefused(
                f"skill {name}: {shown(path)} has mode {shown(mode)} (allowed: 644 755 444 555 600 700)"
            )
        if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise BundleRefused(f"skill {name}: {shown(path)} has no sha256 digest")
        seen.add(path)
        entries.append(FileEntry(path, size, mode, digest))
    manifest = Manifest(name, version, capabilities, tuple(entries))
    if manifest.dump() != data:
        raise BundleRefused(f"skill {name}: the manifest is not in canonical form (sorted, compact JSON)")
    return manifest
