"""Rendering a tenant's secrets as a ``.env`` file, and writing it safely inside a jail.

The format (decided here, tested against POSIX ``sh``, python-dotenv and node's dotenv)::

    # colibri: secrets of tenant acme from collection acme. Written by `colibri provision`; ...
    API_KEY='sk-123'
    GREETING="it's here"

One ``KEY=VALUE`` per key, keys sorted, no ``export``.  A value without ``'`` is single-quoted; a
value with ``'`` is double-quoted, which is only allowed when it holds none of ``" $ ` \\``.
Every reader then sees the exact bytes.  Values no quoting can carry through all three readers are
refused, never changed: NUL, CR (node turns it into LF), ``${`` (python-dotenv interpolates it even
in single quotes), ``\\\\`` and a trailing ``\\`` (python-dotenv unescapes them), and a ``'`` together
with one of ``" $ ` \\``.  A value holds at most 64 KiB and the file 256 KiB: the agent gets these
values through execve(2), whose limits are about that size.

Writing walks from an operator-configured allowed root to the target directory with directory file
descriptors and ``O_NOFOLLOW``: a symlink anywhere below the allowed root (a compromised jail may
plant one) is refused.  The new file is a 0600 temporary file in the same directory, fchown'ed to
the jail user, fsync'ed and renamed over ``.env`` (``staged_env``: only once the caller has
recorded the change); then the directory is fsync'ed.  So ``.env``
is always the old or the new file, never partial, and an unchanged file is not rewritten.
"""

import errno
import os
import re
import secrets
import stat
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from colibri.adapters.envfile_keys import key_names as key_names
from colibri.errors import PermissionDenied, SecretsError, SecretsRefused

ENV_NAME = ".env"
MAX_VALUE_BYTES = 64 * 1024
MAX_FILE_BYTES = 256 * 1024
MAX_PROBLEMS_KEPT = 100
"""A refused tenant's problems named one by one (the rest are counted): every bad key and value
at once, so an operator fixes them in one round, but a collection of 100,000 bad fields does not
make a message of megabytes."""
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*", re.ASCII)
_TMP = re.compile(r"\.env\.colibri\.[0-9a-f]{16}\.tmp")
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True)
class Entry:
    """One secret: ``origin`` says where it came from (never its value)."""

    key: str
    value: str
    origin: str


def shown_key(key: str) -> str:
    """A key as it may appear in a message: escaped and cut (a pasted secret may sit there)."""
    text = key.encode("unicode_escape").decode("ascii")
    return repr(text[:40] + ("..." if len(text) > 40 else ""))


def parse_lines(text: str, origin: str, problems: list[str] | None = None) -> list[Entry]:
    """The ``KEY=VALUE`` lines of a note or a staged ``provider.env``.

    Blank lines and lines starting with ``#`` are skipped; ``export KEY=VALUE`` is accepted.  The
    value is everything after the first ``=``, taken literally (no quotes removed, nothing
    expanded).  Any other line is an error naming its number, not its content: raised, or, when
    ``problems`` is given, appended there and skipped (``render`` then refuses them all at once).
    """
    entries = []
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.removesuffix("\r")
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if "=" not in line:
            if problems is None:
                raise SecretsError(f"{origin} line {number} is not KEY=VALUE")
            problems.append(f"{origin} line {number} is not KEY=VALUE")
            continue
        key, value = line.split("=", 1)
        key = key.strip()
        if key.startswith("export ") or key.startswith("export\t"):
            key = key[len("export") :].strip()
        entries.append(Entry(key, value, f"{origin} line {number}"))
    return entries


def check_value(entry: Entry) -> str:
    """Return the quoted form of ``entry.value`` or raise SecretsError saying why it cannot be."""
    value = entry.value
    where = f"the value of {shown_key(entry.key)} ({entry.origin})"
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise SecretsError(f"{where} is not valid text (a lone surrogate)") from None
    if size > MAX_VALUE_BYTES:
        raise SecretsError(f"{where} is {size} bytes; at most {MAX_VALUE_BYTES} are allowed")
    for bad, why in (("\0", "a NUL byte"), ("\r", "a carriage return"), ("${", "'${'"), ("\\\\", "'\\\\'")):
        if bad in value:
            raise SecretsError(f"{where} contains {why}, which a .env reader would change; refused")
    if value.endswith("\\"):
        raise SecretsError(f"{where} ends with a backslash, which python-dotenv would misread; refused")
    if "'" not in value:
        return f"'{value}'"
    if any(c in value for c in '"$`\\'):
        raise SecretsError(
            f'{where} contains a single quote together with one of " $ ` \\: no .env quoting reads '
            "back the same in sh, python-dotenv and node dotenv; refused"
        )
    return f'"{value}"'


def render(entries: Sequence[Entry], header: str, problems: Sequence[str] = ()) -> bytes:
    """The ``.env`` bytes for ``entries``: keys checked, duplicates refused (naming both sources).

    Every entry is checked, and every invalid key, duplicate key and value that cannot be written
    is named (with ``problems`` found before, e.g. by ``parse_lines``) in one SecretsRefused:
    key names and origins, never a value.  Raises SecretsError for no entries at all (an empty
    .env is never written) or a file over the size limit.
    """
    found = list(problems)
    if not entries and not found:
        raise SecretsError(f"{header}: no secrets found; refusing to write an empty .env")
    seen: dict[str, Entry] = {}
    quoted: dict[str, str] = {}
    for entry in entries:
        if not _KEY.fullmatch(entry.key):
            found.append(
                # The key's text is not shown: a secret pasted where a key belongs would leak into
                # stderr, the store (secrets_error) and logs.  The origin says where to look.
                f"invalid key ({entry.origin}): a key is letters, digits and '_', "
                "not starting with a digit (the key itself is not shown: it may be a pasted secret)"
            )
            continue
        if entry.key in seen:
            found.append(f"duplicate key {entry.key}: from {seen[entry.key].origin} and from {entry.origin}")
            continue
        seen[entry.key] = entry
        try:
            quoted[entry.key] = check_value(entry)
        except SecretsError as exc:
            found.append(exc.message)
    if found:
        kept = tuple(found[:MAX_PROBLEMS_KEPT])
        raise SecretsRefused(f"{header}: {len(found)} problems, nothing written", kept, len(found))
    header = "".join(c if c.isprintable() else " " for c in header)  # one comment line, always
    lines = [f"# colibri: {header}. Written by `colibri provision`; edits are overwritten."]
    lines += [f"{key}={quoted[key]}" for key in sorted(seen)]
    data = ("\n".join(lines) + "\n").encode("utf-8")
    if len(data) > MAX_FILE_BYTES:
        raise SecretsError(f"{header}: the .env would be {len(data)} bytes; at most {MAX_FILE_BYTES}")
    return data


# --- writing -----------------------------------------------------------------------------------


def _inside(path: Path, root: Path) -> tuple[str, ...] | None:
    """The parts of ``path`` below ``root`` (strictly inside), or None."""
    if len(path.parts) <= len(root.parts) or path.parts[: len(root.parts)] != root.parts:
        return None
    return path.parts[len(root.parts) :]


def _relative_to_allowed(root: Path, allowed_roots: Sequence[Path]) -> tuple[Path, tuple[str, ...]]:
    if not root.is_absolute() or os.path.normpath(root) != str(root) or ".." in root.parts:
        raise PermissionDenied(f"refusing target {root}: not an absolute, normalised path")
    for allowed in allowed_roots:
        for base in dict.fromkeys((allowed, Path(os.path.realpath(allowed)))):
            parts = _inside(root, base)
            if parts is not None:
                return base, parts
    shown = ", ".join(str(a) for a in allowed_roots) or "(none configured)"
    raise PermissionDenied(f"refusing target {root}: it is outside the allowed roots ({shown})")


def check_allowed(root: Path, allowed_roots: Sequence[Path]) -> None:
    """PermissionDenied unless ``root`` is inside an allowed root (the rule every write applies)."""
    _relative_to_allowed(root, allowed_roots)


def _open_dir(parent_fd: int, name: str, shown: str) -> int:
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
    except OSError as exc:
        try:
            mode = os.stat(name, dir_fd=parent_fd, follow_symlinks=False).st_mode
        except OSError:
            mode = 0
        if stat.S_ISLNK(mode):
            raise PermissionDenied(f"refusing {shown}: it is a symlink") from None
        if mode and not stat.S_ISDIR(mode):
            raise PermissionDenied(f"refusing {shown}: it is not a directory") from None
        raise SecretsError(f"cannot open {shown}: {exc.strerror}") from None


@contextmanager
def open_target_dir(root: Path, below: Sequence[str], allowed_roots: Sequence[Path]) -> Iterator[int]:
    """A directory fd for ``root/below...``, reached without following any symlink below the
    allowed root that contains ``root``.  Raises PermissionDenied or SecretsError."""
    base, parts = _relative_to_allowed(root, allowed_roots)
    try:
        fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise SecretsError(f"cannot open the allowed root {base}: {exc.strerror}") from None
    current = base
    try:
        for name in (*parts, *below):
            if name in ("", ".", "..") or "/" in name:
                raise PermissionDenied(f"refusing path component {name!r} under {current}")
            current = current / name
            next_fd = _open_dir(fd, name, str(current))
            os.close(fd)
            fd = next_fd
        yield fd
    finally:
        os.close(fd)


def _existing(dir_fd: int, shown: Path) -> tuple[bytes, os.stat_result] | None:
    """The current ``.env`` and its stat, or None; refuses a symlink or a non-regular file."""
    try:
        # Checked before the open too: a device node planted as .env is refused without opening it.
        mode = os.stat(ENV_NAME, dir_fd=dir_fd, follow_symlinks=False).st_mode
        if stat.S_ISLNK(mode):
            raise PermissionDenied(f"refusing {shown}: it is a symlink")
        if not stat.S_ISREG(mode):
            raise PermissionDenied(f"refusing {shown}: it is not a regular file")
        fd = os.open(ENV_NAME, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EMLINK):
            raise PermissionDenied(f"refusing {shown}: it is a symlink") from None
        raise SecretsError(f"cannot read {shown}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise PermissionDenied(f"refusing {shown}: it is not a regular file")
        if info.st_size > MAX_FILE_BYTES:
            return b"", info
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks), info
    finally:
        os.close(fd)


def _remove_stale_temps(dir_fd: int) -> None:
    """Temporary files left by a killed writer (they hold this tenant's own secrets)."""
    for name in os.listdir(dir_fd):
        if _TMP.fullmatch(name):
            try:
                if stat.S_ISREG(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode):
                    os.unlink(name, dir_fd=dir_fd)
            except OSError:
                pass


Install = Callable[[], None]
"""Renames a staged ``.env`` into place (raises SecretsError); None: the file already holds it."""


@contextmanager
def staged_env(dir_fd: int, content: bytes, uid: int, gid: int, shown_dir: Path) -> Iterator[Install | None]:
    """Stage ``content`` as a 0600 temporary file owned by uid:gid beside ``.env`` in ``dir_fd``,
    fsync'ed; yields what renames it over ``.env`` (and fsyncs the directory), or None when
    ``.env`` already holds it.  A staged file not installed is removed on exit: the caller
    records the change first, and installs only once that is recorded (fail-closed).  Raises
    PermissionDenied for a symlink or non-regular ``.env``, SecretsError for any I/O failure;
    the old file is then untouched."""
    shown = shown_dir / ENV_NAME
    current = _existing(dir_fd, shown)
    if current is not None:
        data, info = current
        if data == content and stat.S_IMODE(info.st_mode) == 0o600 and (info.st_uid, info.st_gid) == (uid, gid):
            yield None
            return
    _remove_stale_temps(dir_fd)
    tmp = f".env.colibri.{secrets.token_hex(8)}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(tmp, flags, 0o600, dir_fd=dir_fd)
    except OSError as exc:
        raise SecretsError(f"cannot create a temporary file in {shown_dir}: {exc.strerror}") from None
    installed = False

    def install() -> None:
        nonlocal installed
        try:
            os.rename(tmp, ENV_NAME, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except OSError as exc:
            raise SecretsError(f"cannot write {shown}: {exc.strerror}") from None
        installed = True
        os.fsync(dir_fd)

    try:
        try:
            os.fchmod(fd, 0o600)
            os.fchown(fd, uid, gid)
            view = memoryview(content)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except OSError as exc:
            raise SecretsError(f"cannot write {shown}: {exc.strerror}") from None
        finally:
            os.close(fd)
        yield install
    except Exception:
        _discard(dir_fd, tmp)
        raise
    # A process killed here (BaseException) leaves it: the next writer removes it.
    if not installed:
        _discard(dir_fd, tmp)


def _discard(dir_fd: int, tmp: str) -> None:
    with suppress(OSError):
        os.unlink(tmp, dir_fd=dir_fd)


def write_env(dir_fd: int, content: bytes, uid: int, gid: int, shown_dir: Path) -> bool:
    """Atomically make ``.env`` in ``dir_fd`` hold ``content``, mode 0600, owned by uid:gid.

    Returns False (nothing written) when it already does.  Raises PermissionDenied for a symlink
    or non-regular ``.env``, SecretsError for any I/O failure; the old file is then untouched.
    """
    with staged_env(dir_fd, content, uid, gid, shown_dir) as install:
        if install is not None:
            install()
        return install is not None


@contextmanager
def staged_jail_env(
    root: Path, user: str, content: bytes, allowed_roots: Sequence[Path], *, id_shift: int = 0
) -> Iterator[tuple[Path, Install | None]]:
    """``<root>/home/<user>/.env`` staged (``staged_env``) for the user of the jail's own
    /etc/passwd, as the host sees it: its ids plus ``id_shift`` (the first host id of the jail's
    user namespace).  Yields the path and its installer (None: unchanged).  Raises
    PermissionDenied (outside the allowed roots, a symlink on the way) or SecretsError (user
    missing, I/O error); nothing changes then."""
    from colibri.adapters.jail import UID_BLOCK, read_jail_passwd
    from colibri.errors import JailError

    folder = root / "home" / user
    with open_target_dir(root, ("home", user), allowed_roots) as fd:
        try:
            uid, gid = read_jail_passwd(root, user)
        except JailError as exc:
            raise SecretsError(str(exc)) from None
        if id_shift and not (0 <= uid < UID_BLOCK and 0 <= gid < UID_BLOCK):
            raise SecretsError(f"user {user} of jail {root} has ids {uid}:{gid}, outside its user namespace")
        uid, gid = uid + id_shift, gid + id_shift
        with staged_env(fd, content, uid, gid, folder) as install:
            yield folder / ENV_NAME, install


@contextmanager
def staged_home_env(home: Path, content: bytes, allowed_roots: Sequence[Path]) -> Iterator[tuple[Path, Install | None]]:
    """``<home>/.env`` staged for the owner of ``home`` (spawn-local).  Raises as above."""
    with open_target_dir(home, (), allowed_roots) as fd:
        info = os.fstat(fd)
        with staged_env(fd, content, info.st_uid, info.st_gid, home) as install:
            yield home / ENV_NAME, install


def _installed(staged: tuple[Path, Install | None]) -> tuple[Path, bool]:
    path, install = staged
    if install is not None:
        install()
    return path, install is not None


def write_jail_env(
    root: Path, user: str, content: bytes, allowed_roots: Sequence[Path], *, id_shift: int = 0
) -> tuple[Path, bool]:
    """Write ``<root>/home/<user>/.env`` at once (``staged_jail_env``, installed).  Returns the
    path and whether it changed.  Raises as ``staged_jail_env``; nothing changes then."""
    with staged_jail_env(root, user, content, allowed_roots, id_shift=id_shift) as staged:
        return _installed(staged)


def write_home_env(home: Path, content: bytes, allowed_roots: Sequence[Path]) -> tuple[Path, bool]:
    """Write ``<home>/.env`` owned by the owner of ``home`` (spawn-local).  Raises as above."""
    with staged_home_env(home, content, allowed_roots) as staged:
        return _installed(staged)
