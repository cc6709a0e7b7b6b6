"""Emulated FreeBSD package files for the bastille emulator's pkg(7)/pkg(8) (jailbin/_freebsd.py).

A real package is a tar archive with a ``+MANIFEST`` (UCL; JSON is valid UCL) and the files to
install under their absolute paths.  These have the same shape, with stand-in contents: the pkg
package carries ``/usr/local/sbin/pkg`` and ``pkg-static`` (shims back to the emulated pkg, so
pkg(7) finds pkg(8) installed afterwards), python311 carries ``/usr/local/bin/python3.11`` as a
symlink to the host's ``/usr/bin/python3`` (which the emulator mounts into every jail), so the
mother skill really runs under the rc.d script's interpreter path.

``warm_cache(dir)`` lays them out as ``pkg fetch -o DIR pkg python311-3.11.13`` does: in
``DIR/All/``.  Stdlib only.
"""

from __future__ import annotations

import io
import json
import tarfile
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


def warm_cache(cache: Path, *, with_pkg: bool = True) -> Path:
    """What the runbook's `pkg fetch -y -o CACHE pkg python311-3.11.13` leaves: CACHE/All/*.pkg."""
    all_dir = cache / "All"
    if with_pkg:
        pkg_package(all_dir)
    python_package(all_dir)
    return all_dir
