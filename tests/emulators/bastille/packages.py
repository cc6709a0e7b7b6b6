"""Emulated FreeBSD package files for the bastille emulator's pkg(7)/pkg(8) (jailbin/_freebsd.py).

A real package is a tar archive with a ``+MANIFEST`` (UCL; JSON is valid UCL) and the files to
install under their absolute paths.  These have the same shape, with stand-in contents: the pkg
package carries ``/usr/local/sbin/pkg`` and ``pkg-static`` (shims back to the emulated pkg, so
pkg(7) finds pkg(8) installed afterwards), python311 carries ``/usr/local/bin/python3.11`` as a
symlink to the host's ``/usr/bin/python3`` (which the emulator mounts into every jail), so the
mother skill really runs under the rc.d script's interpreter path.

``publish(dir, packages, signers)`` lays them out as a signed pkg repository, what poudriere and
``pkg repo DIR signing_command: sign.sh`` publish (runbooks/first-party-packages.md): ``All/*.pkg``,
``Latest/pkg.pkg`` + ``Latest/pkg.pkg.sig`` (SIGNATURE/CERT/END), ``meta.conf`` and
``packagesite.pkg`` (``packagesite.yaml``, one JSON object a package with its sha256, and per signer
``packagesite.yaml.sig`` + ``.pub``).  Signing is real: RSA keys and signatures from the openssl
command, exactly as pkg's scripts/sign.sh makes them (``openssl dgst -sign KEY -sha256 -binary`` of
the file's sha256 hex).  ``warm_cache(dir)`` publishes pkg and python311 signed by one key and writes
the matching ``trusted/`` fingerprint next to it: the first-party repository of the tests.  Stdlib
and the openssl command only.
"""

from __future__ import annotations

import atexit
import hashlib
import io
import json
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

PKG_VERSION = "2.1.2"
PYTHON = ("python311", "3.11.13")
PKG_SHIM = b'#!/bin/sh\nexec /usr/sbin/pkg "$@"\n'


def make_package(
    path: Path,
    name: str,
    version: str,
    files: dict[str, bytes] | None = None,
    symlinks: dict[str, str] | None = None,
) -> Path:
    """Write an emulated package ``path`` (name, version, files with mode 0755, symlinks)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:xz") as tar:

        def add(member: tarfile.TarInfo, data: bytes = b"") -> None:
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data) if data else None)

        manifest = json.dumps({"name": name, "version": version, "origin": f"emulated/{name}"}).encode()
        add(tarfile.TarInfo("+MANIFEST"), manifest)
        for target, data in (files or {}).items():
            info = tarfile.TarInfo(target)
            info.mode = 0o755
            add(info, data)
        for target, link in (symlinks or {}).items():
            info = tarfile.TarInfo(target)
            info.type = tarfile.SYMTYPE
            info.linkname = link
            add(info)
    return path


def pkg_package(directory: Path, version: str = PKG_VERSION) -> Path:
    return make_package(
        directory / f"pkg-{version}.pkg",
        "pkg",
        version,
        files={"/usr/local/sbin/pkg": PKG_SHIM, "/usr/local/sbin/pkg-static": PKG_SHIM},
    )


def python_package(directory: Path, name: str = PYTHON[0], version: str = PYTHON[1]) -> Path:
    return make_package(
        directory / f"{name}-{version}.pkg",
        name,
        version,
        symlinks={"/usr/local/bin/python3.11": "/usr/bin/python3"},
    )


@dataclass(frozen=True)
class SigningKey:
    """An RSA signing key (kept off the hosts in real life) and its public certificate."""

    key: Path
    pub: bytes

    @property
    def fingerprint(self) -> str:
        """What pkg compares with trusted/ and revoked/: the sha256 of the certificate."""
        return hashlib.sha256(self.pub).hexdigest()

    def fingerprint_file(self) -> str:
        return f'function: "sha256"\nfingerprint: "{self.fingerprint}"\n'

    def sign(self, data: bytes) -> bytes:
        """scripts/sign.sh: ``echo -n "$sum" | openssl dgst -sign repo.key -sha256 -binary``."""
        digest = hashlib.sha256(data).hexdigest().encode()
        return subprocess.run(
            ["openssl", "dgst", "-sign", str(self.key), "-sha256", "-binary"],
            input=digest,
            capture_output=True,
            check=True,
        ).stdout


def make_key(directory: Path, name: str = "colibri") -> SigningKey:
    """``openssl genrsa -out NAME.key 2048`` and ``openssl rsa -in NAME.key -pubout -out NAME.pub``."""
    directory.mkdir(parents=True, exist_ok=True)
    key, pub = directory / f"{name}.key", directory / f"{name}.pub"
    subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], capture_output=True, check=True)
    subprocess.run(["openssl", "rsa", "-in", str(key), "-pubout", "-out", str(pub)], capture_output=True, check=True)
    return SigningKey(key, pub.read_bytes())


_KEYS: dict[str, SigningKey] = {}


def shared_key(name: str = "colibri") -> SigningKey:
    """One key per test process and name (generating one costs ~50 ms)."""
    if name not in _KEYS:
        directory = tempfile.mkdtemp(prefix="colibri-pkg-keys-")
        atexit.register(shutil.rmtree, directory, True)
        _KEYS[name] = make_key(Path(directory), name)
    return _KEYS[name]


def pkg_sig(data: bytes, key: SigningKey) -> bytes:
    """What poudriere writes as Latest/pkg.pkg.sig (usr.sbin/pkg/pkg.c parse_cert reads it)."""
    return b"SIGNATURE\n" + key.sign(data) + b"\nCERT\n" + key.pub + b"END\n"


def _tar_add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o644
    tar.addfile(info, io.BytesIO(data))


def publish(
    directory: Path,
    packages: list[Path],
    signers: list[SigningKey] | None = None,
    *,
    sign_pkg: SigningKey | None = None,
    manifest_extra: dict[str, dict[str, object]] | None = None,
) -> Path:
    """A pkg repository of ``packages`` in ``directory``; ``signers`` sign the catalogue (none:
    unsigned), ``sign_pkg`` (default: the first signer) signs Latest/pkg.pkg."""
    all_dir = directory / "All"
    all_dir.mkdir(parents=True, exist_ok=True)
    lines = []
    for src in packages:
        dst = all_dir / src.name
        if src.resolve() != dst.resolve():
            dst.write_bytes(src.read_bytes())
        data = dst.read_bytes()
        with tarfile.open(dst) as tar:
            manifest = json.load(tar.extractfile("+MANIFEST"))  # type: ignore[arg-type]
        entry = {**manifest, "path": f"All/{dst.name}", "sum": hashlib.sha256(data).hexdigest(), "pkgsize": len(data)}
        entry.update((manifest_extra or {}).get(manifest["name"], {}))
        lines.append(json.dumps(entry, sort_keys=True))
        if manifest["name"] == "pkg":
            latest = directory / "Latest"
            latest.mkdir(exist_ok=True)
            (latest / "pkg.pkg").write_bytes(data)
            signer = sign_pkg or (signers[0] if signers else None)
            if signer is not None:
                (latest / "pkg.pkg.sig").write_bytes(pkg_sig(data, signer))
    site = ("\n".join(lines) + "\n").encode()
    (directory / "meta.conf").write_text('version = 2;\npacking_format = "txz";\nmanifests = "packagesite.yaml";\n')
    with tarfile.open(directory / "packagesite.pkg", "w:xz") as tar:
        for key in signers or []:
            _tar_add(tar, "packagesite.yaml.sig", key.sign(site))
            _tar_add(tar, "packagesite.yaml.pub", key.pub)
        _tar_add(tar, "packagesite.yaml", site)
    return directory


def trust(directory: Path, trusted: list[SigningKey], revoked: list[SigningKey] | None = None) -> Path:
    """The operator's fingerprints directory (pkg_fingerprints_dir): trusted/ and revoked/."""
    for which, keys in (("trusted", trusted), ("revoked", revoked or [])):
        sub = directory / which
        sub.mkdir(parents=True, exist_ok=True)
        for old in sub.iterdir():
            old.unlink()
        for i, key in enumerate(keys):
            (sub / f"colibri-{i}").write_text(key.fingerprint_file())
    return directory


def fingerprints_of(cache: Path) -> Path:
    """Where ``warm_cache(cache)`` leaves the host's fingerprints directory (beside the mirror)."""
    return cache.with_name(cache.name + ".fingerprints")


def warm_cache(cache: Path, *, with_pkg: bool = True, key: SigningKey | None = None) -> Path:
    """The first-party repository's offline mirror at ``cache`` (a release's var/cache/colibri-pkg:
    thin jails copy /var from their release), pkg and python311 signed by ``key`` (default: the
    test key), and its trusted fingerprint in ``fingerprints_of(cache)``.  Returns ``cache/All``."""
    key = key or shared_key()
    with tempfile.TemporaryDirectory() as tmp:
        built = [python_package(Path(tmp))] + ([pkg_package(Path(tmp))] if with_pkg else [])
        publish(cache, built, [key])
    trust(fingerprints_of(cache), [key])
    return cache / "All"
