"""pkg(7) and pkg(8) stand-ins for the bastille emulator's jails (the ``pkg`` shim imports this).

/usr/sbin/pkg is pkg(7) (freebsd-src usr.sbin/pkg/pkg.c): while ${LOCALBASE}/sbin/pkg is missing
(every new thin jail: its /usr/local is its own) it only bootstraps pkg(8), else it hands over to
pkg(8) (here: in-process, not execv, so the stand-ins never loop).  pkg(8) follows freebsd/pkg
(libpkg/pkg_config.c, pkg_repo.c, src/install.c, src/update.c), for the subset colibri and
bastille use.  What is checked and what is not: README.md ("pkg").

* Repository configuration (pkg.conf(5), pkg-repository(5)): every ``*.conf`` (not starting with
  a dot) of REPOS_DIR, default ``/etc/pkg/`` then ``/usr/local/etc/pkg/repos/``, each directory in
  alphabetical order; a repository named again is overwritten field by field (``FreeBSD: {
  enabled: no }`` keeps its url), ``enabled`` defaults to the earlier value (a new one: yes), a
  new repository without ``url`` is ignored, ``priority`` is reset to 0 unless given,
  ``signature_type`` defaults to none; then ``/var/db/pkg/repos_state/{enable,disable}/NAME``.
* Signed catalogues (signature_type fingerprints): ``packagesite.pkg`` holds ``packagesite.yaml``
  and, per signer, ``packagesite.yaml.sig`` + ``.pub`` (what ``pkg repo … signing_command:``
  writes).  A signer's fingerprint is the sha256 of its certificate; any signer in
  ``FINGERPRINTS/revoked`` refuses the catalogue, none in ``trusted`` refuses it, and the RSA
  signature (PKCS#1 v1.5 over sha256 of the sha256 hex of the file, as pkg's openssl signer) is
  verified for real.  pkg(7) checks ``Latest/pkg.pkg.sig`` (SIGNATURE/CERT/END) the same way.
* Repositories are reachable through ``file://`` urls only (no network); any other url is the
  emulated remote repository of before (names only, BASTILLE_EMU_PKG_AVAILABLE / _FAIL=pkg).
* The installed-package database is ``/var/db/pkg/.emulated-installed``: one ``name-version
  repository`` line each (``unknown-repository`` for ``pkg add``, as pkg_printf.c's ``%R``).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import sys
import tarfile

from _freebsd import _getopts

PKG_DB = "/var/db/pkg/.emulated-installed"
PKG_POLICY = "/var/db/pkg/.emulated-policy"  # written by `bastille pkg` (BASTILLE_EMU_PKG_AVAILABLE/FAIL)
PKG_REPOS_DB = "/var/db/pkg/repos"  # NAME/catalogue.json: an updated repository's packages
PKG_REPOS_STATE = "/var/db/pkg/repos_state"
PKG_EMULATED_VERSION = "2.1.2"  # what a bootstrap from the emulated remote repository installs
ABI = "FreeBSD:14:amd64"
UNKNOWN_REPO = "unknown-repository"
NO_FILE = "File unavailable (e.g., file not found, no access)"  # libfetch's FETCH_UNAVAIL text
EPKG_FATAL = 3  # libpkg/pkg.h.in: OK, END, WARN, FATAL; `pkg install` exits with it when an update fails

# pkg.c's own texts
PKG_NON_INTERACTIVE = (
    "The package management tool is not yet installed on your system.\n"
    "Please set ASSUME_ALWAYS_YES=yes environment variable to be able to bootstrap "
    "in non-interactive (stdin not being a tty)\n"
)
PKG_CONFIRM = (
    "The package management tool is not yet installed on your system.\nDo you want to fetch and install it now? [y/N]: "
)

Entry = tuple[str, str, str]  # name, version, repository


def _err(msg: str) -> None:
    """pkg_emit_error(): warnx(3), so "pkg: MSG" on stderr."""
    sys.stderr.write(f"pkg: {msg}\n")


# ---------------------------------------------------------------------------------------------
# UCL, the subset repository configs and fingerprint files use (libucl): objects ``{}``, arrays
# ``[]``, ``key: value`` / ``key = value`` / ``key { ... }``, ``,``/``;`` separators, quoted and
# bare strings, booleans (yes/no/true/false/on/off), integers, ``#`` and ``/* */`` comments, and
# the variables pkg registers (``${ABI}``...).
# ---------------------------------------------------------------------------------------------


class UclError(ValueError):
    pass


class _Quoted(str):
    """A quoted UCL string: ucl_object_toboolean() of it is false, whatever it says."""


class _Ucl:
    BARE_END = " \t\r\n,;}]#"

    def __init__(self, text: str, variables: dict[str, str]) -> None:
        self.s, self.i, self.vars = text, 0, variables

    def ws(self) -> None:
        s = self.s
        while self.i < len(s):
            if s[self.i] in " \t\r\n":
                self.i += 1
            elif s[self.i] == "#" or s.startswith("//", self.i):
                end = s.find("\n", self.i)
                self.i = len(s) if end < 0 else end + 1
            elif s.startswith("/*", self.i):
                end = s.find("*/", self.i + 2)
                if end < 0:
                    raise UclError("unfinished multiline comment")
                self.i = end + 2
            else:
                break

    def expand(self, value: str) -> str:
        return re.sub(r"\$\{([A-Za-z_]+)\}|\$([A-Za-z_]+)", lambda m: self.vars.get(m[1] or m[2], m[0]), value)

    def document(self) -> dict[str, object]:
        self.ws()
        if self.s.startswith("{", self.i):
            self.i += 1
            obj = self.members("}")
            self.i += 1
        else:
            obj = self.members("")
        self.ws()
        if self.i < len(self.s):
            raise UclError(f"unexpected character '{self.s[self.i]}' at offset {self.i}")
        return obj

    def members(self, end: str) -> dict[str, object]:
        obj: dict[str, object] = {}
        while True:
            self.ws()
            if self.i >= len(self.s):
                if end:
                    raise UclError("unexpected end of file, expected '}'")
                return obj
            if end and self.s[self.i] == end:
                return obj
            key = self.key()
            self.ws()
            if self.i < len(self.s) and self.s[self.i] in ":=":
                self.i += 1
                self.ws()
            obj[key] = self.value()
            self.ws()
            if self.i < len(self.s) and self.s[self.i] in ",;":
                self.i += 1

    def key(self) -> str:
        if self.s[self.i] in "\"'":
            return str(self.string())
        m = re.compile(r"[A-Za-z0-9_./+-]+").match(self.s, self.i)
        if not m:
            raise UclError(f"invalid character in a key: '{self.s[self.i]}'")
        self.i = m.end()
        return m.group(0)

    def string(self) -> _Quoted:
        q, out = self.s[self.i], []
        self.i += 1
        while self.i < len(self.s) and self.s[self.i] != q:
            if self.s[self.i] == "\\" and q == '"' and self.i + 1 < len(self.s):
                out.append({"n": "\n", "t": "\t"}.get(self.s[self.i + 1], self.s[self.i + 1]))
                self.i += 2
            else:
                out.append(self.s[self.i])
                self.i += 1
        if self.i >= len(self.s):
            raise UclError("unfinished quoted string")
        self.i += 1
        text = "".join(out)
        return _Quoted(self.expand(text) if q == '"' else text)

    def value(self) -> object:
        if self.i >= len(self.s):
            raise UclError("unexpected end of file, expected a value")
        c = self.s[self.i]
        if c == "{":
            self.i += 1
            obj = self.members("}")
            self.i += 1
            return obj
        if c == "[":
            self.i += 1
            items: list[object] = []
            while True:
                self.ws()
                if self.i >= len(self.s):
                    raise UclError("unexpected end of file, expected ']'")
                if self.s[self.i] == "]":
                    self.i += 1
                    return items
                items.append(self.value())
                self.ws()
                if self.i < len(self.s) and self.s[self.i] in ",;":
                    self.i += 1
        if c in "\"'":
            return self.string()
        j = self.i
        while j < len(self.s) and self.s[j] not in self.BARE_END:
            j += 1
        word, self.i = self.s[self.i : j], j
        low = word.lower()
        if low in ("yes", "true", "on"):
            return True
        if low in ("no", "false", "off"):
            return False
        if re.fullmatch(r"-?[0-9]+", word):
            return int(word)
        return self.expand(word)


def ucl_parse(text: str, variables: dict[str, str] | None = None) -> dict[str, object]:
    return _Ucl(text, variables or {}).document()


def _toboolean(value: object) -> bool:
    """ucl_object_toboolean(): booleans and numbers; any string (even "yes") is false."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value != 0
    return False


# ---------------------------------------------------------------------------------------------
# Repositories (libpkg/pkg_config.c: load_repositories, add_repo, the repos_state overrides)
# ---------------------------------------------------------------------------------------------


class Repo:
    def __init__(self, name: str, url: str) -> None:
        self.name, self.url = name, url
        self.enabled = True
        self.signature_type = "none"
        self.fingerprints: str | None = None
        self.pubkey: str | None = None
        self.priority = 0

    @property
    def directory(self) -> str | None:
        """The repository's directory when its url is file:// (the only kind reachable here)."""
        url = self.url[4:] if self.url.startswith("pkg+") else self.url
        return url[len("file://") :] if url.startswith("file://") else None


_STRING_KEYS = ("url", "pubkey", "mirror_type", "signature_type", "fingerprints", "type", "ssh_args")


def _variables() -> dict[str, str]:
    major = ABI.split(":")[1]
    return {"ABI": ABI, "OSNAME": "FreeBSD", "RELEASE": major, "VERSION_MAJOR": major, "ARCH": "amd64"}


def _repos_dirs() -> list[str]:
    env = os.environ.get("REPOS_DIR")
    if env:
        return [d for d in env.split(",") if d]
    return ["/etc/pkg/", os.path.join(os.environ.get("LOCALBASE") or "/usr/local", "etc/pkg/repos/")]


def _add_repo(repos: dict[str, Repo], name: str, obj: dict[str, object]) -> None:
    r = repos.get(name)
    enable = r.enabled if r is not None else True
    fields: dict[str, str] = {}
    priority = 0
    for key, value in obj.items():
        k = key.lower()
        if k == "enabled":
            enable = _toboolean(value)
        elif k in _STRING_KEYS:
            if not isinstance(value, str):
                _err(f"Expecting a string for the '{key}' key of the '{name}' repo")
                return
            fields[k] = str(value)
        elif k == "priority":
            if isinstance(value, bool) or not isinstance(value, int):
                _err(f"Expecting an integer for the '{key}' key of the '{name}' repo")
                return
            priority = value
    if r is None and "url" not in fields:
        return  # "No repo and no url": ignored
    sig = fields.get("signature_type")
    if sig is not None and sig.lower() not in ("pubkey", "fingerprints", "none"):
        _err(f"Invalid signature_type '{sig}' for the '{name}' repo")
        return
    if r is None:
        r = repos[name] = Repo(name, fields["url"])
    elif "url" in fields:
        r.url = fields["url"]
    if sig is not None:
        r.signature_type = sig.lower()
    if "fingerprints" in fields:
        r.fingerprints = fields["fingerprints"]
    if "pubkey" in fields:
        r.pubkey = fields["pubkey"]
    r.enabled = enable
    r.priority = priority


def pkg_repositories() -> list[Repo]:
    """Every configured repository, in pkg's order (the files' order; priority sorts later)."""
    repos: dict[str, Repo] = {}
    for directory in _repos_dirs():
        try:
            names = sorted(n for n in os.listdir(directory) if n.endswith(".conf") and len(n) > 5 and n[0] != ".")
        except OSError:
            continue
        for fname in names:
            path = os.path.join(directory, fname)
            try:
                with open(path) as fh:
                    doc = ucl_parse(fh.read(), _variables())
            except OSError as exc:
                _err(f"Unable to open '{directory.rstrip('/')}/{fname}': {exc.strerror}")
                continue
            except UclError as exc:
                _err(f"Error parsing: '{directory.rstrip('/')}/{fname}': {exc}")
                continue
            for name, obj in doc.items():
                if isinstance(obj, dict):
                    _add_repo(repos, name, obj)
                else:
                    _err(f"Ignoring bad configuration entry in {fname}: {json.dumps(obj)}")
    for name, r in repos.items():
        if os.path.exists(os.path.join(PKG_REPOS_STATE, "enable", name)):
            r.enabled = True
        elif os.path.exists(os.path.join(PKG_REPOS_STATE, "disable", name)):
            r.enabled = False
    return list(repos.values())


# ---------------------------------------------------------------------------------------------
# Fingerprints and signatures (libpkg/pkg_repo.c; usr.sbin/pkg/pkg.c verify_signature)
# ---------------------------------------------------------------------------------------------


def _load_fingerprint(path: str) -> str | None:
    """pkg_repo_load_fingerprint(): ``function: "sha256"`` and ``fingerprint: "HEX"``; a file it
    cannot parse, or without both keys, is skipped without a word."""
    try:
        with open(path) as fh:
            obj = ucl_parse(fh.read())
    except (OSError, UclError, UnicodeDecodeError):
        return None
    values = {k.lower(): v for k, v in obj.items() if isinstance(v, str)}
    function, fp = values.get("function"), values.get("fingerprint")
    if function is None or fp is None:
        return None
    if function.lower() != "sha256":
        _err(f"Unsupported hashing function: {function}")
        return None
    return fp.lower()


def load_fingerprints(directory: str) -> list[tuple[str, str]] | None:
    """(file name, hash) of every fingerprint file in ``directory``; None when it cannot be opened."""
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return None
    out = []
    for n in names:
        fp = _load_fingerprint(os.path.join(directory, n))
        if fp is not None:
            out.append((n, fp))
    return out


def _der(data: bytes, i: int) -> tuple[int, int, int]:
    """One DER TLV at data[i]: (tag, start of the value, end of the value)."""
    tag, n = data[i], data[i + 1]
    i += 2
    if n & 0x80:
        k = n & 0x7F
        n = int.from_bytes(data[i : i + k], "big")
        i += k
    return tag, i, i + n


def rsa_public_key(pem: bytes) -> tuple[int, int] | None:
    """(n, e) of a PEM "PUBLIC KEY" (SubjectPublicKeyInfo) or "RSA PUBLIC KEY"; None otherwise."""
    import base64

    m = re.search(rb"-----BEGIN (RSA )?PUBLIC KEY-----(.*?)-----END (RSA )?PUBLIC KEY-----", pem, re.S)
    if not m:
        return None
    try:
        der = base64.b64decode(b"".join(m.group(2).split()))
        _, i, _ = _der(der, 0)  # SEQUENCE
        if not m.group(1):
            _, a, b = _der(der, i)  # AlgorithmIdentifier
            if b"\x2a\x86\x48\x86\xf7\x0d\x01\x01\x01" not in der[a:b]:  # rsaEncryption
                return None
            tag, a, b = _der(der, b)  # BIT STRING: 0 unused bits, then RSAPublicKey
            if tag != 0x03:
                return None
            _, i, _ = _der(der, a + 1)
        tag, a, b = _der(der, i)
        n = int.from_bytes(der[a:b], "big")
        tag2, c, d = _der(der, b)
        if tag != 0x02 or tag2 != 0x02:
            return None
        return n, int.from_bytes(der[c:d], "big")
    except (IndexError, ValueError):
        return None


_SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")


def rsa_verify_cert(data: bytes, cert: bytes, sig: bytes) -> bool:
    """pkgsign_ossl.c ossl_verify_cert_cb(): RSA PKCS#1 v1.5 with SHA-256 over the sha256 hex of
    the data (what ``openssl dgst -sign KEY -sha256`` of that hex line makes, scripts/sign.sh)."""
    key = rsa_public_key(cert)
    if key is None:
        return False
    n, e = key
    k = (n.bit_length() + 7) // 8
    if len(sig) != k:
        return False
    digest = hashlib.sha256(hashlib.sha256(data).hexdigest().encode()).digest()
    pad = k - 3 - len(_SHA256_DIGEST_INFO) - len(digest)
    if pad < 8:
        return False
    expected = b"\x00\x01" + b"\xff" * pad + b"\x00" + _SHA256_DIGEST_INFO + digest
    return pow(int.from_bytes(sig, "big"), e, n).to_bytes(k, "big") == expected


def _trust(repo_fingerprints: str) -> tuple[set[str], set[str]] | None:
    """pkg_repo_load_fingerprints(): trusted/ must open and hold one, revoked/ is optional."""
    trusted = load_fingerprints(os.path.join(repo_fingerprints, "trusted"))
    if trusted is None:
        _err(f"Error opening the trusted directory {repo_fingerprints}/trusted")
        _err("Error loading trusted certificates")
        return None
    if not trusted:
        _err("No trusted certificates")
        return None
    revoked = load_fingerprints(os.path.join(repo_fingerprints, "revoked")) or []
    return {h for _, h in trusted}, {h for _, h in revoked}


def _check_catalogue(repo: Repo, members: dict[str, bytes], fname: str) -> bool:
    """pkg_repo_archive_extract_check_archive() for signature_type fingerprints."""
    signers = sorted({m[:-4] for m in members if m.endswith((".sig", ".pub"))})
    if not signers:
        _err("No signature found")
        return False
    if repo.fingerprints is None:
        _err("Error opening the trusted directory (null)/trusted")
        _err("Error loading trusted certificates")
        return False
    trust = _trust(repo.fingerprints)
    if trust is None:
        return False
    trusted, revoked = trust
    certs: list[tuple[bytes, bytes, bool]] = []
    for s in signers:
        sig, cert = members.get(f"{s}.sig"), members.get(f"{s}.pub")
        if sig is None:
            _err(f"No signature with name {s} has been found")
            return False
        if cert is None:
            _err(f"No key with name {s} has been found")
            return False
        h = hashlib.sha256(cert).hexdigest()
        if h in revoked:
            _err("At least one of the certificates has been revoked")
            return False
        certs.append((sig, cert, h in trusted))
    if not any(t for _, _, t in certs):
        _err("No trusted public keys found")
        return False
    data = members[fname]
    for sig, cert, is_trusted in certs:
        if rsa_verify_cert(data, cert, sig) and is_trusted:
            return True
        if not rsa_verify_cert(data, cert, sig):
            _err("signature verification failure")
    _err("No trusted certificate has been used to sign the repository")
    return False


# ---------------------------------------------------------------------------------------------
# The installed-package database and policy
# ---------------------------------------------------------------------------------------------


def _pkg_policy() -> tuple[set[str] | None, bool]:
    try:
        with open(PKG_POLICY) as fh:
            lines = [x.strip() for x in fh.read().splitlines() if x.strip()]
    except OSError:
        return None, False
    fail = "!fail" in lines
    names = [x for x in lines if not x.startswith("!")]
    return (set(names) if names and names != ["*"] else None), fail


def _pkg_split(spec: str) -> tuple[str, str]:
    """'python311-3.11.13' -> ('python311', '3.11.13'); 'py311-httpx' -> ('py311-httpx', '1.0')."""
    base = os.path.basename(spec)
    base = base[:-4] if base.endswith((".pkg", ".txz")) else base
    name, _, ver = base.rpartition("-")
    if name and ver[:1].isdigit():
        return name, ver
    return base, "1.0"


def _pkg_match(entry: tuple[str, ...], pattern: str) -> bool:
    return pattern in (entry[0], f"{entry[0]}-{entry[1]}")


def _pkg_installed() -> list[Entry]:
    out: list[Entry] = []
    with contextlib.suppress(OSError), open(PKG_DB) as fh:
        for line in fh.read().splitlines():
            words = line.split()
            if words:
                n, v = _pkg_split(words[0])
                out.append((n, v, words[1] if len(words) > 1 else UNKNOWN_REPO))
    return out


def _pkg_save(entries: list[Entry]) -> None:
    os.makedirs(os.path.dirname(PKG_DB), exist_ok=True)
    with open(PKG_DB, "w") as fh:
        fh.write("".join(f"{n}-{v} {r}\n" for n, v, r in entries))


def _pkg8_path() -> str:
    return os.path.join(os.environ.get("LOCALBASE") or "/usr/local", "sbin", "pkg")


def _yes(value: str | None) -> bool:
    return (value or "").lower() in ("yes", "true", "on", "1")


def _is_pkg_pkg(path: str) -> bool:
    """pkg.c pkg_is_pkg_pkg(): the file's name is pkg-VERSION.EXT, pkg-devel-VERSION.EXT or pkg.EXT."""
    base = os.path.basename(path)
    name, sep, _ = base.rpartition("-")
    if not sep:
        return base.startswith("pkg.") and len(base) > 4
    return name in ("pkg", "pkg-devel")


def _read_package(path: str):  # type: ignore[no-untyped-def]
    """(manifest, tarfile) of an emulated package, or raise ValueError with pkg's message."""
    try:
        tar = tarfile.open(path)  # noqa: SIM115 (handed to the caller, which closes it)
    except (OSError, tarfile.TarError):
        raise ValueError(f"archive_read_open_filename({path}): Unrecognized archive format") from None
    try:
        manifest = json.load(tar.extractfile("+MANIFEST"))  # type: ignore[arg-type]
        if not isinstance(manifest, dict) or not manifest.get("name") or not manifest.get("version"):
            raise ValueError
    except (KeyError, ValueError, TypeError):
        tar.close()
        raise ValueError(f"{path} is not a valid package: no manifest found") from None
    return manifest, tar


def _install_package(path: str, installed: list[Entry], repo: str = UNKNOWN_REPO) -> int:
    """Install the archive's files under / and record it (pkg-add(8); pkg install from ``repo``)."""
    try:
        manifest, tar = _read_package(path)
    except ValueError as exc:
        _err(str(exc))
        return 1
    name, version = str(manifest["name"]), str(manifest["version"])
    with tar:
        if any(e[0] == name for e in installed):
            print(f"the most recent version of {name}-{version} is already installed")
            return 0
        print(f"Installing {name}-{version}...")
        for member in tar.getmembers():
            if member.name.startswith("+"):
                continue
            rel = member.name.lstrip("/")
            if not rel or ".." in rel.split("/"):
                _err(f"{path}: refusing the path {member.name}")
                return 1
            dst = "/" + rel
            if member.isdir():
                os.makedirs(dst, exist_ok=True)
                continue
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(dst)
            if member.issym():
                os.symlink(member.linkname, dst)
            elif member.isfile():
                src = tar.extractfile(member)
                assert src is not None
                with open(dst, "wb") as out:
                    out.write(src.read())
                os.chmod(dst, member.mode & 0o7777)
    installed.append((name, version, repo))
    _pkg_save(installed)
    return 0


# ---------------------------------------------------------------------------------------------
# pkg(7): usr.sbin/pkg/pkg.c and config.c
# ---------------------------------------------------------------------------------------------


def _pkg7_repositories(repo_name: str | None) -> list[Repo]:
    """config.c: the enabled repositories (disabled ones are skipped), or only the one -r names."""
    repos = [r for r in pkg_repositories() if r.enabled]
    return [r for r in repos if r.name == repo_name] if repo_name else repos


def _parse_cert(data: bytes) -> tuple[bytes, bytes]:
    """pkg.c parse_cert(): the SIGNATURE, CERT sections up to END of a ``pkg.pkg.sig``."""
    sig, cert, target = bytearray(), bytearray(), None
    end_seen = False
    for line in io.BytesIO(data).readlines():
        if line == b"SIGNATURE\n":
            target = sig
        elif line == b"CERT\n":
            target = cert
        elif line == b"TYPE\n":
            target = bytearray()
        elif line == b"END\n":
            end_seen = True
            break
        elif target is not None:
            target += line
    if not end_seen and cert.endswith(b"END\n"):
        cert = cert[:-4]
    return bytes(sig[:-1]), bytes(cert)


def _pkg7_verify(pkg_path: str, sig_path: str, fingerprints: str | None) -> bool:
    """pkg.c verify_signature()."""
    if fingerprints is None:
        sys.stderr.write("pkg: No FINGERPRINTS defined\n")
        return False
    trusted = load_fingerprints(os.path.join(fingerprints, "trusted"))
    if trusted is None:
        sys.stderr.write("pkg: Error loading trusted certificates\n")
        return False
    if not trusted:
        sys.stderr.write("No trusted certificates found.\n")
        return False
    revoked = load_fingerprints(os.path.join(fingerprints, "revoked"))
    if revoked is None:
        sys.stderr.write("pkg: Error loading revoked certificates\n")
        return False
    with open(sig_path, "rb") as fh:
        sig, cert = _parse_cert(fh.read())
    h = hashlib.sha256(cert).hexdigest()
    for name, fp in revoked:
        if fp == h:
            sys.stderr.write(f"The package was signed with revoked certificate {name}\n")
            return False
    match = next((name for name, fp in trusted if fp == h), None)
    if match is None:
        sys.stderr.write("No trusted fingerprint found matching package's certificate\n")
        return False
    sys.stdout.write(f"Verifying signature with trusted certificate {match}... ")
    sys.stdout.flush()
    with open(pkg_path, "rb") as fh:
        ok = rsa_verify_cert(fh.read(), cert, sig)
    if not ok:
        sys.stderr.write("Signature is not valid\n")
        return False
    print("done")
    return True


def _pkg7_install(path: str) -> int:
    """extract_pkg_static() + `pkg-static add FILE` (which installs pkg(8) itself)."""
    try:
        _, tar = _read_package(path)
    except ValueError as exc:
        _err(str(exc))
        return 1
    with tar:
        if not any(m.name.endswith("/pkg-static") for m in tar.getmembers()):
            sys.stderr.write("pkg: fail to extract pkg-static\n")
            return 1
    return _install_package(path, _pkg_installed())


def _pkg7_bootstrap_local(path: str, repo_name: str | None) -> int:
    """pkg.c bootstrap_pkg_local(): the signature the configuration asks for (SIGNATURE_TYPE from
    the environment, else the last enabled repository's, as config.c copies each one's settings
    over the globals), in ``FILE.sig``."""
    repos = _pkg7_repositories(repo_name)
    sig_type = os.environ.get("SIGNATURE_TYPE") or (repos[-1].signature_type if repos else "none")
    fingerprints = os.environ.get("FINGERPRINTS") or (repos[-1].fingerprints if repos else None)
    if sig_type.upper() == "FINGERPRINTS":
        if not os.path.isfile(path + ".sig"):
            sys.stderr.write("Signature for pkg not available.\n")
            return 1
        if not _pkg7_verify(path, path + ".sig", fingerprints):
            return 1
    elif sig_type.upper() == "PUBKEY":
        sys.stderr.write("pkg: signature_type pubkey is not emulated\n")
        return 1
    elif sig_type.upper() != "NONE":
        sys.stderr.write(f"pkg: Signature type {sig_type} is not supported for bootstrapping.\n")
        return 1
    return _pkg7_install(path)


def _pkg7_bootstrap_remote(repo_name: str | None) -> int:
    """pkg.c bootstrap_pkg() over each enabled repository until one works: URL/Latest/pkg.pkg, and
    URL/Latest/pkg.pkg.sig checked against that repository's fingerprints.  A file:// url is read
    for real; any other is the emulated remote repository (BASTILLE_EMU_FAIL=pkg: unreachable)."""
    _, fail = _pkg_policy()
    repos = _pkg7_repositories(repo_name)
    if not repos:
        sys.stderr.write("pkg: No enabled repositories\n" if not repo_name else f"pkg: No repository {repo_name}\n")
        return 1
    for repo in repos:
        print(f"Bootstrapping pkg from {repo.url}, please wait...")
        directory = repo.directory
        if directory is None:
            if fail:
                sys.stderr.write(f"pkg: Error fetching {repo.url}/Latest/pkg.pkg: Network is unreachable\n")
                sys.stderr.write("A pre-built version of pkg could not be found for your system.\n")
                continue
            shim = '#!/bin/sh\nexec /usr/sbin/pkg "$@"\n'
            for n in ("pkg", "pkg-static"):
                dst = os.path.join(os.path.dirname(_pkg8_path()), n)
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                with open(dst, "w") as fh:
                    fh.write(shim)
                os.chmod(dst, 0o755)
            installed = [e for e in _pkg_installed() if e[0] != "pkg"] + [("pkg", PKG_EMULATED_VERSION, repo.name)]
            _pkg_save(installed)
            print(f"Installing pkg-{PKG_EMULATED_VERSION}...")
            return 0
        pkg_file = os.path.join(directory, "Latest", "pkg.pkg")
        if not os.path.isfile(pkg_file):
            sys.stderr.write(f"pkg: Error fetching {repo.url}/Latest/pkg.pkg: {NO_FILE}\n")
            sys.stderr.write("A pre-built version of pkg could not be found for your system.\n")
            continue
        if repo.signature_type == "fingerprints":
            if not os.path.isfile(pkg_file + ".sig"):
                sys.stderr.write("Signature for pkg not available.\n")
                sys.stderr.write(f"pkg: Error fetching {repo.url}/Latest/pkg.pkg.sig: {NO_FILE}\n")
                sys.stderr.write("A pre-built version of pkg could not be found for your system.\n")
                continue
            if not _pkg7_verify(pkg_file, pkg_file + ".sig", repo.fingerprints):
                continue
        elif repo.signature_type == "pubkey":
            sys.stderr.write("pkg: signature_type pubkey is not emulated\n")
            continue
        if _pkg7_install(pkg_file) == 0:
            return 0
    return 1


def pkg_main(argv: list[str]) -> int:
    """pkg(7): /usr/sbin/pkg."""
    if os.access(_pkg8_path(), os.X_OK):
        return pkg8_main(argv)
    try:
        opts, args = _getopts([a for a in argv if a not in ("--yes", "--force")], "dfr:yN46")
    except ValueError as exc:
        sys.stderr.write(f"pkg: illegal option -- {exc}\n")
        return 1
    if "N" in opts:  # "a reliable test for whether a system is configured to use pkg"
        sys.stderr.write("pkg: pkg is not installed\n")
        return 1
    command = args[0] if args else None
    repo_name = None
    yes = "--yes" in argv or "y" in opts
    if command in ("add", "bootstrap"):
        try:
            sub, rest = _getopts(args[1:], "fr:y")
        except ValueError:
            sub, rest = {}, args[1:]
        repo_name = (sub.get("r") or [None])[-1]
        yes = yes or "y" in sub
        if command == "bootstrap" and rest:
            sys.stderr.write("Too many arguments\nUsage: pkg [-4|-6] bootstrap [-f] [-y]\n")
            return 1
        if command == "add" and len(rest) == 1 and _is_pkg_pkg(rest[0]):
            if not os.access(rest[0], os.R_OK):
                sys.stderr.write(f"No such file: {rest[0]}\n")
                return 1
            return _pkg7_bootstrap_local(rest[0], repo_name)
    else:
        yes = yes or "-y" in args[1:]
    yes = yes or _yes(os.environ.get("ASSUME_ALWAYS_YES"))
    if not yes:
        if not sys.stdin.isatty():
            sys.stderr.write(PKG_NON_INTERACTIVE)
            return 1
        sys.stdout.write(PKG_CONFIRM)
        sys.stdout.flush()
        if not sys.stdin.readline().strip().lower().startswith("y"):
            return 1
    if _pkg7_bootstrap_remote(repo_name) != 0:
        return 1
    if command == "bootstrap":
        return 0
    return pkg8_main(argv)


# ---------------------------------------------------------------------------------------------
# pkg(8): update (src/update.c), install (src/install.c), add, delete, info, query
# ---------------------------------------------------------------------------------------------


def _catalogue_path(repo: Repo) -> str:
    return os.path.join(PKG_REPOS_DB, repo.name, "catalogue.json")


def _read_catalogue(repo: Repo) -> list[dict[str, object]] | None:
    try:
        with open(_catalogue_path(repo)) as fh:
            return list(json.load(fh))
    except (OSError, ValueError):
        return None


def _fetch_catalogue(repo: Repo, directory: str) -> bool:
    """pkg_repo_binary_update_proceed() for a file:// repository: packagesite.pkg, its signature
    checked as the repository's signature_type asks, then the catalogue kept for install."""
    site = os.path.join(directory, "packagesite.pkg")
    try:
        with tarfile.open(site) as tar:
            members = {}
            for m in tar.getmembers():
                if m.isfile() and m.size <= 64 << 20:
                    f = tar.extractfile(m)
                    assert f is not None
                    members[m.name] = f.read()
    except FileNotFoundError:
        _err(f"{repo.url}/packagesite.pkg: {NO_FILE}")
        return False
    except (OSError, tarfile.TarError):
        _err("Error extracting the archive: 'Unrecognized archive format'")
        return False
    if "packagesite.yaml" not in members:
        _err("Repo extraction failed")
        return False
    if repo.signature_type == "fingerprints":
        if not _check_catalogue(repo, members, "packagesite.yaml"):
            return False
    elif repo.signature_type == "pubkey":
        _err("signature_type pubkey is not emulated")
        return False
    packages = []
    for line in members["packagesite.yaml"].decode("utf-8", "replace").splitlines():
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            _err("Invalid data (expecting a json object)")
            return False
        packages.append(obj)
    os.makedirs(os.path.dirname(_catalogue_path(repo)), exist_ok=True)
    with open(_catalogue_path(repo), "w") as fh:
        json.dump(packages, fh)
    return True


def _update_one(repo: Repo, fail: bool) -> bool:
    directory = repo.directory
    if directory is None:  # the emulated remote repository
        if fail:
            _err(f"Repository {repo.name} cannot be opened. 'pkg update' required")
            return False
        return True
    if _fetch_catalogue(repo, directory):
        return True
    print(f"Unable to update repository {repo.name}")  # pkg_emit_notice: stdout
    with contextlib.suppress(OSError):
        os.unlink(_catalogue_path(repo))  # "Remove potentially corrupted repo database"
    return False


def pkgcli_update(repos: list[Repo], names: list[str], strict: bool, quiet: bool = False) -> int:
    """src/update.c pkgcli_update(): EPKG_OK (0) or EPKG_FATAL (3)."""
    _, fail = _pkg_policy()
    if not repos and not names:
        sys.stderr.write("No active remote repositories configured.\n")
        return EPKG_FATAL
    retcode, update_count, total = EPKG_FATAL, 0, 0
    for r in repos:
        if names and r.name not in names:
            continue
        if not names and not r.enabled:
            continue
        if not quiet:
            print(f"Updating {r.name} repository catalogue...")
        ok = _update_one(r, fail)
        retcode = 0 if ok else EPKG_FATAL
        if ok:
            if not quiet:
                print(f"{r.name} repository is up to date.")
            update_count += 1
        total += 1
    for n in names:
        if not any(r.name == n for r in repos):
            sys.stderr.write(f"WARNING: repository '{n}' does not exist\n")
    if total == 0:
        retcode = EPKG_FATAL
        if not quiet:
            print("No repositories are enabled.")
    elif update_count == total:
        if not quiet:
            verb = "is" if len(names) == 1 else "are"
            print(f"{', '.join(names)} {verb} up to date." if names else "All repositories are up to date.")
    else:
        if not quiet:
            print("Error updating repositories!")
        if strict:
            retcode = EPKG_FATAL
    return retcode


def _install(sub: dict[str, list[str]], names: list[str], installed: list[Entry]) -> int:
    """src/install.c exec_install(), for names from the repositories."""
    repos = pkg_repositories()
    reponames = sub.get("r", [])
    available, fail = _pkg_policy()
    if "U" not in sub and repos:
        code = pkgcli_update(repos, reponames, strict=False, quiet="q" in sub)
        if code != 0:
            return code
    if not reponames and not any(r.enabled for r in repos):
        _err("No active remote repositories configured")
        return 1
    opened: list[Repo] = []
    for r in repos:
        if (r.name in reponames) if reponames else r.enabled:
            if r.directory is not None and _read_catalogue(r) is None:
                _err(f"Repository {r.name} cannot be opened. 'pkg update' required")
                continue
            opened.append(r)
    unknown = [n for n in reponames if not any(r.name == n for r in repos)]
    if unknown:
        for n in unknown:
            _err(f"Unknown repository: {n}")
        return 1
    opened.sort(key=lambda r: -r.priority)
    if fail and any(r.directory is None for r in opened):
        _err("emulated failure (BASTILLE_EMU_FAIL=pkg)")
        return 1
    plan: list[tuple[str, str, Repo, dict[str, object] | None]] = []
    for n in names:
        if any(_pkg_match(e, n) for e in installed) and "f" not in sub:
            continue
        found = None
        for r in opened:
            if r.directory is None:
                if available is None or n in available or _pkg_split(n)[0] in available:
                    name, version = _pkg_split(n)
                    found = (name, version, r, None)
            else:
                for p in _read_catalogue(r) or []:
                    if _pkg_match((str(p.get("name")), str(p.get("version"))), n):
                        found = (str(p["name"]), str(p["version"]), r, p)
                        break
            if found:
                break
        if found is None:
            _err(f"No packages available to install matching '{n}' have been found in the repositories")
            return 1
        plan.append(found)
    if not plan:
        print("Checking integrity... done (0 conflicting)")
        print("The most recent versions of packages are already installed")
        return 0
    print(f"The following {len(plan)} package(s) will be affected (of 0 checked):\n\nNew packages to be INSTALLED:")
    for n, v, r, _ in plan:
        print(f"\t{n}: {v} [{r.name}]")
    print(f"\nNumber of packages to be installed: {len(plan)}\n")
    if not ("y" in sub or _yes(os.environ.get("ASSUME_ALWAYS_YES"))):
        sys.stdout.write("Proceed with this action? [y/N]: ")
        sys.stdout.flush()
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            return 1
    files: list[str] = []
    for n, v, r, p in plan:  # fetch and check every package before installing any
        if p is None:
            continue
        path = os.path.join(r.directory or "", str(p.get("path") or f"All/{n}-{v}.pkg"))
        try:
            with open(path, "rb") as fh:
                digest = hashlib.sha256(fh.read()).hexdigest()
        except OSError:
            _err(f"{r.url}/{p.get('path')}: {NO_FILE}")
            return EPKG_FATAL
        if digest != p.get("sum"):
            _err(f"{n}-{v} failed checksum from repository")
            return EPKG_FATAL
        files.append(path)
    for i, (n, v, r, p) in enumerate(plan, 1):
        print(f"[{i}/{len(plan)}] Installing {n}-{v}...")
        if p is None:
            installed.append((n, v, r.name))
            _pkg_save(installed)
            continue
        installed[:] = [e for e in installed if e[0] != n]
        if _install_package(files.pop(0), installed, r.name) != 0:
            return EPKG_FATAL
    return 0


_QUERY = {"n": 0, "v": 1, "R": 2}


def _query(fmt: str, entry: Entry) -> str:
    def one(m: re.Match[str]) -> str:
        if m.group(1) == "%":
            return "%"
        if m.group(1) == "o":
            return f"emulated/{entry[0]}"
        return entry[_QUERY[m.group(1)]] if m.group(1) in _QUERY else m.group(0)

    return re.sub(r"%([%nvRo])", one, fmt)


def print_repository(r: Repo, pad: bool) -> str:
    """src/utils.c print_repository()."""
    out = f'{"  " if pad else ""}{r.name}: {{ \n    {"url":<16}: "{r.url}",'
    out += f"\n    {'enabled':<16}: {'yes' if r.enabled else 'no'},"
    out += f"\n    {'priority':<16}: {r.priority}"
    out += f',\n    {"signature_type":<16}: "{r.signature_type.upper()}"'
    if r.fingerprints is not None:
        out += f',\n    {"fingerprints":<16}: "{r.fingerprints}"'
    if r.pubkey is not None:
        out += f',\n    {"pubkey":<16}: "{r.pubkey}"'
    return out + "\n  }\n"


def pkg8_main(argv: list[str]) -> int:
    """pkg(8): the subset colibri and bastille use."""
    try:
        opts, args = _getopts(argv, "NdlvyC:R:o:j:c:r:4:6:")
        if "N" in opts:
            return 0
        if len(opts.get("v", [])) == 1 and not args:  # main.c show_version_info(1)
            print(PKG_EMULATED_VERSION)
            return 0
        if len(opts.get("v", [])) > 1 and not args:  # -vv: the version, then every repository
            print(f"{'Version':<24}: {PKG_EMULATED_VERSION}\n\nRepositories:")
            for r in pkg_repositories():
                sys.stdout.write(print_repository(r, True))
            return 0
        if not args:
            sys.stderr.write("Usage: pkg [-v] [-d] [-l] [-N] [-j <jail name or id>|-c <chroot path>|-r <rootdir>]\n")
            return 1
        cmd, rest = args[0], args[1:]
        if cmd == "query":
            sub_opts, names = _getopts(rest, "aegix")
        else:
            sub_opts, names = _getopts(rest, "AfIMnFqRUyagiCxXeEr:o:d")
    except ValueError as exc:
        sys.stderr.write(f"pkg: illegal option -- {exc}\n")
        return 1
    _, fail = _pkg_policy()
    installed = _pkg_installed()

    if cmd == "bootstrap":
        print(f"pkg already bootstrapped at {_pkg8_path()}")
        return 0
    if cmd == "update":
        code = pkgcli_update(pkg_repositories(), sub_opts.get("r", []), strict=True, quiet="q" in sub_opts)
        return 0 if code == 0 else 1
    if cmd == "add":
        if not names:
            sys.stderr.write("Usage: pkg add [-IAfqM] <pkg-name> ...\n")
            return 1
        for f in names:
            if not os.path.isfile(f):
                _err(f"Unable to access {f}: No such file or directory")
                return 1
            if _install_package(f, installed) != 0:
                return 1
        return 0
    if cmd == "install":
        if not names:
            sys.stderr.write("Usage: pkg install [-AfInFMqRUy] [-r reponame] <pkg-name> ...\n")
            return 1
        return _install(sub_opts, names, installed)
    if cmd in ("delete", "remove"):
        missing = [n for n in names if not any(_pkg_match(e, n) for e in installed)]
        if missing:
            _err(f"No packages matched for pattern '{missing[0]}'")
            return 1
        keep = [e for e in installed if not any(_pkg_match(e, n) for n in names)]
        for e in installed:
            if e not in keep:
                print(f"Deinstalling {e[0]}-{e[1]}...")
        _pkg_save(keep)
        return 0
    if cmd == "query":  # pkg-query(8): FORMAT [pkg-name ...]; -a: every package
        if not names:
            sys.stderr.write("Usage: pkg query <query-format> <pkg-name>\n")
            return 1
        fmt, patterns = names[0], names[1:]
        hits = [e for e in installed if "a" in sub_opts or any(_pkg_match(e, n) for n in patterns)]
        for e in hits:
            print(_query(fmt, e))
        return 0 if hits else 1
    if cmd == "info":
        if not names:
            for n, v, _ in installed:
                print(f"{n + '-' + v:<31} emulated package")
            return 0
        hits = [e for e in installed if any(_pkg_match(e, n) for n in names)]
        ok = all(any(_pkg_match(e, n) for e in installed) for n in names)
        if "e" in sub_opts or "E" in sub_opts:  # pkg-info(8) -e: nothing printed, 0 when installed, else 1
            return 0 if ok else 1
        if not ok:
            _err(f"No package(s) matching {names[0]}")
        for n, v, r in hits:
            print(f"{n}-{v}\nName           : {n}\nVersion        : {v}\nRepository     : {r}")
        return 0 if ok else 1
    if cmd in ("upgrade", "clean", "autoremove", "audit", "version", "check", "fetch"):
        print("Updating FreeBSD repository catalogue...\nFreeBSD repository is up to date.")
        print("All repositories are up to date.")
        return 1 if fail else 0
    sys.stderr.write(f"pkg: emulated pkg does not implement '{cmd}'\n")
    return 1
