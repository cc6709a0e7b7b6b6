"""This host's skills trust store (issue 13), in a directory only its owner reads.

``<state_dir>/supply/`` (0700, owned by the user colibri runs as: root on a host): ``root.pub``
(the ONE pinned root public key),
``seen.json`` (the highest root and index versions accepted, with their documents' digests: what
refuses a rollback), ``lkg/root.json`` and ``lkg/index.json`` (the last-known-good pair, kept
after a successful verification: what ``skills list`` shows offline), ``community.json`` (the
operator's allowed community skills, each pinned by its bundle digest) and ``community/<hex>.tar``
(the allowed bundles themselves).  Every file is 0600, written to a temporary file and renamed
into place; every file and directory is opened without following symlinks and refused unless it
is that user's and not readable by others (as store/orchestrator.py refuses its record).
"""

import contextlib
import fcntl
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from colibri.errors import PermissionDenied, SupplyError
from colibri.supply import docs
from colibri.supply.chain import Seen

ROOT_PUB = "root.pub"
SEEN = "seen.json"
COMMUNITY = "community.json"
MAX_FILE = 16 << 20


class TrustStore:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    # ---- files -----------------------------------------------------------------------------------
    def _dir(self, sub: str = "", create: bool = True) -> Path:
        path = self.directory / sub if sub else self.directory
        for step in (self.directory, path) if sub else (self.directory,):
            if create:
                with contextlib.suppress(FileExistsError):
                    step.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
                    step.mkdir(mode=0o700)
            try:
                st = os.lstat(step)
            except FileNotFoundError:
                return path
            if not stat.S_ISDIR(st.st_mode):
                raise PermissionDenied(f"{step} is not a directory (a symlink?): refusing it")
            if st.st_uid != os.geteuid() or st.st_mode & 0o077:
                raise PermissionDenied(
                    f"{step} must be owned by uid {os.geteuid()} and mode 0700 "
                    f"(it is uid {st.st_uid}, mode {stat.S_IMODE(st.st_mode):04o})"
                )
        return path

    def read(self, name: str, limit: int = MAX_FILE) -> bytes | None:
        sub, _, leaf = name.rpartition("/")
        path = self._dir(sub, create=False) / leaf
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno == 40:
                raise PermissionDenied(f"{path} is a symlink: refusing it") from None
            raise
        with os.fdopen(fd, "rb") as handle:
            st = os.fstat(handle.fileno())
            if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
                raise PermissionDenied(
                    f"{path} must be a regular file owned by uid {os.geteuid()}, mode 0600 "
                    f"(it is uid {st.st_uid}, mode {stat.S_IMODE(st.st_mode):04o})"
                )
            data = handle.read(limit + 1)
        if len(data) > limit:
            raise PermissionDenied(f"{path} is larger than {limit} bytes")
        return data

    def write(self, name: str, data: bytes) -> None:
        sub, _, leaf = name.rpartition("/")
        where = self._dir(sub)
        tmp = where / f".{leaf}.{os.getpid()}"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, where / leaf)
        dir_fd = os.open(where, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the trust store's lock (two verifications never race on seen.json)."""
        fd = os.open(self._dir() / "trust.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    # ---- what it holds ---------------------------------------------------------------------------
    def root_key(self) -> bytes | None:
        """The pinned root public key file's bytes (None: no root pinned)."""
        return self.read(ROOT_PUB, 4096)

    def pin(self, line: bytes) -> None:
        self.write(ROOT_PUB, line)

    def seen(self) -> Seen:
        data = self.read(SEEN, 4096)
        if data is None:
            return Seen()
        doc = docs.load(data, 4096, str(self.directory / SEEN))
        try:
            return Seen(
                int(doc["root_version"]), str(doc["root_digest"]), int(doc["index_version"]), str(doc["index_digest"])
            )
        except (KeyError, TypeError, ValueError):
            raise SupplyError(f"{self.directory / SEEN} is damaged: restore it or pin the root again") from None

    def remember(self, seen: Seen, root: bytes, index: bytes) -> None:
        """Accepted: the last-known-good pair, then the highest versions (a crash between leaves
        seen.json at the older versions, which the pair on disk still passes)."""
        self.write("lkg/root.json", root)
        self.write("lkg/index.json", index)
        self.write(
            SEEN,
            docs.dump(
                {
                    "root_version": seen.root_version,
                    "root_digest": seen.root_digest,
                    "index_version": seen.index_version,
                    "index_digest": seen.index_digest,
                }
            ),
        )

    def forget(self) -> None:
        """Drop what was seen and the last-known-good pair (a new root key is pinned)."""
        for name in (SEEN, "lkg/root.json", "lkg/index.json"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._dir(name.rpartition("/")[0], create=False) / name.rpartition("/")[2])

    def last_known_good(self) -> tuple[bytes, bytes] | None:
        root = self.read("lkg/root.json")
        index = self.read("lkg/index.json")
        return (root, index) if root is not None and index is not None else None

    def community(self) -> dict[str, Any]:
        data = self.read(COMMUNITY, 1 << 20)
        return {} if data is None else docs.load(data, 1 << 20, str(self.directory / COMMUNITY))

    def allow(self, allowed: dict[str, Any], digest: str, bundle: bytes) -> None:
        self.write(f"community/{digest.removeprefix('sha256:')}.tar", bundle)
        self.write(COMMUNITY, docs.dump(allowed))

    def community_bundle(self, digest: str) -> bytes | None:
        return self.read(f"community/{digest.removeprefix('sha256:')}.tar")

    def keep_signature(self, digest: str, sig: bytes) -> None:
        """The detached signature a first-party bundle was installed with, kept so a respawn
        while the repository is unreachable still checks it against the last-known-good root."""
        self.write(f"sigs/{digest.removeprefix('sha256:')}.sig", sig)

    def signature(self, digest: str, limit: int) -> bytes | None:
        return self.read(f"sigs/{digest.removeprefix('sha256:')}.sig", limit)
