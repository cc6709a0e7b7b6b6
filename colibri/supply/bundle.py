"""A skill bundle (issue 13): one tar of ``<name>/`` and ``<name>/MANIFEST.json``; pure.

The bundle is an uncompressed POSIX tar, or that tar gzipped (read with a hard cap on the
unpacked size and on the ratio, so a decompression bomb is refused after at most the cap is
inflated).  Reading checks every member before anything is written: only regular files and
directories under ``<name>/`` (no symlink, hard link, device, fifo, no setuid/setgid/sticky bit),
plain relative paths (no ``..``, no absolute path, names at most 255 bytes), at most MAX_FILES
members and MAX_UNPACKED bytes; then each file against the manifest (its size, mode and sha256;
no file outside the manifest, none missing).  Writing (``extract``) is into a directory that
must not exist yet, made here, files opened O_EXCL|O_NOFOLLOW: the caller removes it on failure.
"""

import hashlib
import io
import os
import stat
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from colibri.errors import BundleRefused
from colibri.supply import manifest as mf
from colibri.supply.manifest import MANIFEST, FileEntry, Manifest

MAX_BUNDLE = 16 << 20
"""The largest bundle file read (compressed or not)."""
MAX_UNPACKED = 32 << 20
"""The most bytes a bundle's tar (after gunzip) and its files together may hold."""
MAX_RATIO = 20
"""A gzipped bundle may inflate at most this many times its size (text compresses ~4-8x)."""
MAX_MEMBERS = mf.MAX_FILES + 128
_BLOCK = 64 << 10


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Unpacked:
    """A bundle read and checked in memory: its manifest's bytes, the manifest, each file's bytes."""

    manifest_bytes: bytes
    manifest: Manifest
    files: dict[str, bytes]


def gunzip(data: bytes, what: str) -> bytes:
    cap = min(MAX_UNPACKED, max(len(data) * MAX_RATIO, 1 << 20))
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    out = bytearray()
    try:
        out += inflater.decompress(data, cap + 1)
        while inflater.unconsumed_tail and len(out) <= cap:
            out += inflater.decompress(inflater.unconsumed_tail, cap + 1 - len(out))
    except zlib.error:
        raise BundleRefused(f"{what}: not a valid gzip stream") from None
    if len(out) > cap:
        raise BundleRefused(f"{what}: a decompression bomb (it inflates past {cap} bytes): refused")
    if not inflater.eof:
        raise BundleRefused(f"{what}: the gzip stream is cut short")
    if inflater.unused_data:
        raise BundleRefused(f"{what}: data after the gzip stream")
    return bytes(out)


def name_of(data: bytes) -> str:
    """The skill directory a bundle holds (its first member's top component)."""
    raw = gunzip(data, "the bundle") if data[:2] == b"\x1f\x8b" else data
    try:
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
            first = tar.next()
    except (tarfile.TarError, EOFError, ValueError):
        raise BundleRefused("the file is not a tar bundle") from None
    if first is None:
        raise BundleRefused("the bundle is empty")
    return mf.check_name(first.name.strip("/").split("/")[0])


def _member(info: tarfile.TarInfo, name: str) -> str | None:
    """The member's path relative to the skill directory (None: the directory itself)."""
    where = f"skill {name}"
    path = info.name
    if path.startswith("/"):
        raise BundleRefused(f"{where}: absolute path {mf.shown(path)} in the bundle")
    if info.issym() or info.islnk():
        raise BundleRefused(f"{where}: {mf.shown(path)} is a {'symlink' if info.issym() else 'hard link'}")
    if info.type not in (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.DIRTYPE):  # no sparse or contiguous file
        raise BundleRefused(f"{where}: {mf.shown(path)} is a device, fifo or other special file")
    if info.mode & (stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX):
        raise BundleRefused(f"{where}: {mf.shown(path)} has a setuid, setgid or sticky bit")
    stripped = path.rstrip("/") if info.isdir() else path
    if stripped == name:
        return None
    if not stripped.startswith(name + "/"):
        mf.check_path(stripped, name)  # '../x' is named as an escape, not as 'outside'
        raise BundleRefused(f"{where}: {mf.shown(path)} is outside the skill's directory {name}/")
    return mf.check_path(stripped[len(name) + 1 :], name)


def unpack(data: bytes, name: str) -> Unpacked:
    """Read and check the bundle of skill ``name`` (BundleRefused naming the skill and the reason)."""
    where = f"skill {name}"
    if len(data) > MAX_BUNDLE:
        raise BundleRefused(f"{where}: the bundle is larger than {MAX_BUNDLE} bytes")
    raw = gunzip(data, where) if data[:2] == b"\x1f\x8b" else data
    if len(raw) > MAX_UNPACKED:
        raise BundleRefused(f"{where}: the bundle is larger than {MAX_UNPACKED} bytes unpacked")
    files: dict[str, bytes] = {}
    modes: dict[str, int] = {}
    dirs: set[str] = set()
    total = 0
    try:
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
            count = 0
            for info in tar:
                count += 1
                if count > MAX_MEMBERS:
                    raise BundleRefused(f"{where}: more than {MAX_MEMBERS} members in the bundle")
                rel = _member(info, name)
                if rel is None:
                    continue
                if rel in files or rel in dirs:
                    raise BundleRefused(f"{where}: {mf.shown(rel)} appears twice in the bundle")
                if info.isdir():
                    dirs.add(rel)
                    continue
                total += info.size
                if total > MAX_UNPACKED:
                    raise BundleRefused(f"{where}: its files hold more than {MAX_UNPACKED} bytes")
                handle = tar.extractfile(info)
                assert handle is not None
                body = handle.read(info.size + 1)
                if len(body) != info.size:
                    raise BundleRefused(f"{where}: {mf.shown(rel)} is cut short in the bundle")
                files[rel] = body
                modes[rel] = stat.S_IMODE(info.mode)
    except (tarfile.TarError, EOFError, UnicodeError, ValueError, OverflowError) as exc:
        if isinstance(exc, BundleRefused):
            raise
        raise BundleRefused(f"{where}: not a valid tar bundle ({type(exc).__name__})") from None
    manifest_bytes = files.pop(MANIFEST, None)
    if manifest_bytes is None:
        raise BundleRefused(f"{where}: the bundle holds no {name}/{MANIFEST}")
    modes.pop(MANIFEST, None)
    manifest = mf.parse(manifest_bytes, f"{where}: {MANIFEST}")
    if manifest.name != name:
        raise BundleRefused(f"{where}: the manifest names another skill ({manifest.name})")
    check_files(manifest, files, modes, dirs)
    return Unpacked(manifest_bytes, manifest, files)


def check_files(manifest: Manifest, files: dict[str, bytes], modes: dict[str, int], dirs: set[str]) -> None:
    where = f"skill {manifest.name}"
    listed = {entry.path: entry for entry in manifest.files}
    for path in sorted(files):
        if path not in listed:
            raise BundleRefused(f"{where}: {mf.shown(path)} is in the bundle but not in the manifest")
    for path, entry in listed.items():
        body = files.get(path)
        if body is None:
            raise BundleRefused(f"{where}: {mf.shown(path)} is in the manifest but missing from the bundle")
        if len(body) != entry.size or hashlib.sha256(body).hexdigest() != entry.sha256:
            raise BundleRefused(f"{where}: {mf.shown(path)} was changed (its size or sha256 is not the manifest's)")
        if modes[path] != entry.mode:
            raise BundleRefused(f"{where}: {mf.shown(path)} has mode {modes[path]:o}, the manifest says {entry.mode:o}")
    parents = {q for p in listed for q in _ancestors(p)}
    for path in sorted(parents & set(listed)):
        raise BundleRefused(f"{where}: {mf.shown(path)} is both a file and a directory in the manifest")
    for path in dirs:
        if path in listed:
            raise BundleRefused(f"{where}: {mf.shown(path)} is a directory in the bundle, a file in the manifest")
        if path not in parents:
            raise BundleRefused(f"{where}: directory {mf.shown(path)} holds no file of the manifest")


def _ancestors(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def extract(unpacked: Unpacked, dest: Path) -> None:
    """Write the checked files under ``dest`` (made here, mode 0755; it must not exist)."""
    os.mkdir(dest, 0o755)
    os.chmod(dest, 0o755)  # noqa: S103 - a skill's directory is read by the jail's agent, never written
    for entry in sorted(unpacked.manifest.files, key=lambda e: e.path):
        target = dest / entry.path
        for parent in _ancestors(entry.path):
            with_dir = dest / parent
            if not with_dir.is_dir():
                os.mkdir(with_dir, 0o755)
                os.chmod(with_dir, 0o755)  # noqa: S103 - whatever the umask: the jail's agent reads it
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, unpacked.files[entry.path])
            os.fchmod(fd, entry.mode)
        finally:
            os.close(fd)
    fd = os.open(dest / MANIFEST, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o444)
    try:
        os.write(fd, unpacked.manifest_bytes)
    finally:
        os.close(fd)


def build(directory: Path, name: str, version: str, capabilities: tuple[str, ...]) -> tuple[bytes, Manifest]:
    """The bundle of ``directory`` (regular files and directories only; anything else refused)."""
    mf.check_name(name)
    mf.check_version(version, name)
    caps = mf.check_capabilities(list(capabilities), name)
    entries: list[FileEntry] = []
    bodies: dict[str, bytes] = {}
    total = 0
    for root, subdirs, names in os.walk(directory, followlinks=False):
        subdirs.sort()
        base = Path(root)
        for sub in subdirs:
            if (base / sub).is_symlink():
                raise BundleRefused(f"skill {name}: {base / sub} is a symlink: bundles hold none")
        for leaf in sorted(names):
            path = base / leaf
            rel = path.relative_to(directory).as_posix()
            if rel == MANIFEST:
                continue  # a manifest left by an earlier build: written anew
            st = os.lstat(path)
            if not stat.S_ISREG(st.st_mode):
                raise BundleRefused(f"skill {name}: {rel} is not a regular file (symlink, device, fifo)")
            mf.check_path(rel, name)
            mode = 0o755 if st.st_mode & 0o111 else 0o644
            body = path.read_bytes()
            total += len(body)
            if total > MAX_UNPACKED or len(entries) >= mf.MAX_FILES:
                raise BundleRefused(f"skill {name}: more than {mf.MAX_FILES} files or {MAX_UNPACKED} bytes")
            entries.append(FileEntry(rel, len(body), mode, hashlib.sha256(body).hexdigest()))
            bodies[rel] = body
    entries.sort(key=lambda e: e.path)
    manifest = Manifest(name, version, caps, tuple(entries))
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:", format=tarfile.PAX_FORMAT) as tar:
        dirs = sorted({q for e in entries for q in _ancestors(e.path)})
        for item in [name] + [f"{name}/{d}" for d in dirs]:
            _add(tar, item, None, 0o755)
        _add(tar, f"{name}/{MANIFEST}", manifest.dump(), 0o444)
        for entry in entries:
            _add(tar, f"{name}/{entry.path}", bodies[entry.path], entry.mode)
    return out.getvalue(), manifest


def _add(tar: tarfile.TarFile, path: str, body: bytes | None, mode: int) -> None:
    info = tarfile.TarInfo(path)
    info.mode = mode
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.mtime = 0  # the same directory builds the same bytes
    if body is None:
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
    else:
        info.size = len(body)
        tar.addfile(info, io.BytesIO(body))
