"""A skills repository (issue 13): a directory, or an HTTP(S) URL serving the same files statically.

Layout: ``root.json``, ``index.json``, ``bundles/<name>-<version>.tar`` and ``.tar.sig``.  Every
read is bounded in bytes (the caller's limit: a larger answer is refused, never read whole) and,
over HTTP, in time (``timeout`` per request, redirects not followed).  Only a directory can be
written (``publish`` runs on the operator's signing machine, whose copy is then served).
"""

import contextlib
import os
import re
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Protocol

from colibri.errors import CommandTimeout, ConfigError, SupplyError, SupplyUnavailable

_CHUNK = 64 << 10
_URL = re.compile(r"https?://[^\s/?#]+(/\S*)?", re.ASCII)
_RELATIVE = re.compile(r"(root|index)\.json|bundles/[a-z0-9-]+-[0-9.]+\.tar(\.sig)?", re.ASCII)


class SkillRepository(Protocol):
    location: str

    def fetch(self, path: str, limit: int) -> bytes:
        """The file at ``path`` (at most ``limit`` bytes: SupplyError beyond; SupplyUnavailable if unreachable)."""
        ...


def _check(path: str) -> str:
    if not _RELATIVE.fullmatch(path):
        raise SupplyError(f"not a repository path: {path[:80]!r}")
    return path


class DirectoryRepository:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.location = str(directory)

    def fetch(self, path: str, limit: int) -> bytes:
        target = self.directory / _check(path)
        try:
            fd = os.open(target, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            raise SupplyUnavailable(f"the skills repository {self.location} has no {path}") from None
        except OSError as exc:
            raise SupplyUnavailable(
                f"cannot read {path} from the skills repository {self.location}: {exc.strerror}"
            ) from None
        with os.fdopen(fd, "rb") as handle:
            data = handle.read(limit + 1)
        if len(data) > limit:
            raise SupplyError(f"{path} in the skills repository is larger than {limit} bytes: refused")
        return data

    def exists(self, path: str) -> bool:
        return (self.directory / _check(path)).exists()

    def write(self, path: str, data: bytes) -> None:
        """``data`` at ``path``, atomically (a reader sees the old file or the new, never half)."""
        target = self.directory / _check(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


class HttpRepository:
    def __init__(self, url: str, timeout: float) -> None:
        self.url = url.rstrip("/")
        self.location = self.url
        self.timeout = timeout
        self._opener = urllib.request.build_opener(_NoRedirect)

    def fetch(self, path: str, limit: int) -> bytes:
        url = f"{self.url}/{_check(path)}"
        headers = {"User-Agent": "colibri-skills", "Accept-Encoding": "identity"}
        request = urllib.request.Request(url, headers=headers)  # noqa: S310 - the URL is http(s), checked above
        deadline = time.monotonic() + self.timeout * 3  # a slow drip is cut, not waited on
        data = bytearray()
        try:
            with self._opener.open(request, timeout=self.timeout) as answer:
                length = answer.headers.get("Content-Length")
                if length and length.isdigit() and int(length) > limit:
                    raise SupplyError(f"{path} in the skills repository is larger than {limit} bytes: refused")
                while len(data) <= limit:
                    chunk = answer.read(min(_CHUNK, limit + 1 - len(data)))
                    if not chunk:
                        break
                    data += chunk
                    if time.monotonic() > deadline:
                        raise CommandTimeout(f"reading {path} from the skills repository {self.url}", self.timeout * 3)
        except urllib.error.HTTPError as exc:
            raise SupplyUnavailable(f"the skills repository {self.url} answered {exc.code} for {path}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise SupplyUnavailable(f"the skills repository {self.url} is unreachable: {str(reason)[:120]}") from None
        except CommandTimeout as exc:
            raise SupplyUnavailable(exc.message) from None
        if len(data) > limit:
            raise SupplyError(f"{path} in the skills repository is larger than {limit} bytes: refused")
        return bytes(data)


def open_repository(location: str, timeout: float = 10.0) -> DirectoryRepository | HttpRepository:
    """The repository the ``skills_repository`` setting names (ConfigError if it names none)."""
    if _URL.fullmatch(location):
        return HttpRepository(location, timeout)
    if "://" in location or not os.path.isabs(location):
        raise ConfigError(f"skills_repository {location[:80]!r} is not an absolute path or an http(s) URL")
    return DirectoryRepository(Path(location))
