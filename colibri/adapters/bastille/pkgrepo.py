"""The agent jail's pkg configuration (issue 13): the first-party repository, pinned.

colibri writes it into the jail from the host, before the template runs, as it does the agent's ids
(``hardening.IDS_FILE``); the template's agent-jail-bootstrap.sh then installs the pinned packages
with ``pkg install -r colibri`` and refuses anything else.  pkg-repository(5) and libpkg's
pkg_config.c: every ``*.conf`` of ``/etc/pkg/`` and then ``/usr/local/etc/pkg/repos/`` is read in
order and a later file overrides an earlier one field by field, so:

* ``/usr/local/etc/pkg/repos/colibri.conf``: the first-party repository, ``signature_type:
  "fingerprints"`` with ``fingerprints: "/usr/local/etc/pkg/fingerprints/colibri"`` (its
  ``trusted/`` and ``revoked/`` copied from the operator's ``pkg_fingerprints_dir``);
* ``/usr/local/etc/pkg/repos/FreeBSD.conf``: ``FreeBSD: { enabled: no }`` for a paid tenant, so
  the release's default repository is off; a community tenant keeps it (its agent may install
  more from FreeBSD's repository, at the operator's risk), and colibri's own packages still come
  from the first-party repository only.

``revoked/`` is made even when empty: pkg(7) (usr.sbin/pkg/pkg.c verify_signature) refuses to
bootstrap with "Error loading revoked certificates" when it cannot open it; pkg(8) does not mind.
The fingerprint files are checked on the host first (pkg skips a file it cannot parse without a
word, which would turn a typo into "No trusted certificates" inside the jail).
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from colibri.adapters import jailfs
from colibri.errors import JailError, SupplyError

REPO_NAME = "colibri"
REPOS_DIR = "/usr/local/etc/pkg/repos"
REPO_CONF = f"{REPOS_DIR}/{REPO_NAME}.conf"
FREEBSD_CONF = f"{REPOS_DIR}/FreeBSD.conf"
FINGERPRINTS = f"/usr/local/etc/pkg/fingerprints/{REPO_NAME}"
TIERS = ("paid", "community")
MAX_FINGERPRINT_FILES = 64
MAX_FINGERPRINT_BYTES = 4096
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_FINGERPRINT = re.compile(
    r'\s*function\s*[:=]\s*"sha256"\s*[;,]?\s*fingerprint\s*[:=]\s*"([0-9a-f]{64})"\s*[;,]?\s*'
    r'|\s*fingerprint\s*[:=]\s*"([0-9a-f]{64})"\s*[;,]?\s*function\s*[:=]\s*"sha256"\s*[;,]?\s*'
)


@dataclass(frozen=True)
class FirstPartyRepo:
    """The operator's first-party pkg repository: its url (pkg-repository(5); ``file://`` for an
    offline mirror) and the host directory of its fingerprints (``trusted/``, ``revoked/``)."""

    url: str | None
    fingerprints_dir: Path | None


def repo_conf(url: str) -> bytes:
    return (
        f"# written by colibri (issue 13): the first-party repository, signature-checked.\n"
        f"{REPO_NAME}: {{\n"
        f'  url: "{url}",\n'
        f'  signature_type: "fingerprints",\n'
        f'  fingerprints: "{FINGERPRINTS}",\n'
        f"  enabled: yes\n"
        f"}}\n"
    ).encode()


FREEBSD_OFF = (
    b"# written by colibri (issue 13): a paid tenant's jail uses the first-party repository only.\n"
    b"FreeBSD: { enabled: no }\n"
)


def _fingerprint_files(directory: Path, which: str, *, required: bool) -> dict[str, tuple[bytes, str]]:
    """The fingerprint files of ``directory/which``, each checked: a regular file, small, and
    ``function: "sha256"`` + ``fingerprint: "<64 hex>"`` (libpkg pkg_repo_parse_fingerprint)."""
    sub = directory / which
    try:
        names = sorted(os.listdir(sub))
    except FileNotFoundError:
        if required:
            raise SupplyError(
                f"pkg_fingerprints_dir {directory} has no {which}/ directory: put the first-party repository's "
                "fingerprint file there (runbooks/first-party-packages.md)"
            ) from None
        return {}
    except OSError as exc:
        raise SupplyError(f"cannot read {sub}: {exc.strerror}") from None
    if len(names) > MAX_FINGERPRINT_FILES:
        raise SupplyError(f"{sub} holds {len(names)} files; at most {MAX_FINGERPRINT_FILES} fingerprints are allowed")
    files: dict[str, tuple[bytes, str]] = {}
    for name in names:
        path = sub / name
        if not _NAME.fullmatch(name):
            raise SupplyError(f"{sub}: {name!r} is not a fingerprint file name (letters, digits, . _ -)")
        st = path.lstat()
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_FINGERPRINT_BYTES:
            raise SupplyError(f"{path} is not a regular file of at most {MAX_FINGERPRINT_BYTES} bytes")
        data = path.read_bytes()
        text = data.decode("utf-8", "replace")
        body = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
        match = _FINGERPRINT.fullmatch(body)
        if not match:
            raise SupplyError(
                f'{path} is not a pkg fingerprint file (function: "sha256" and fingerprint: "<64 lower-case hex>")'
            )
        files[name] = (data, match.group(1) or match.group(2))
    if required and not files:
        raise SupplyError(f"{sub} is empty: no first-party signing key is trusted")
    return files


def check(repo: FirstPartyRepo, tier: str) -> tuple[str, dict[str, bytes], dict[str, bytes]]:
    """The url and the trusted and revoked fingerprint files, or SupplyError saying what is missing."""
    if tier not in TIERS:
        raise SupplyError(f"unknown tenant tier {tier!r} (paid or community)")
    if not repo.url or repo.fingerprints_dir is None:
        missing = " and ".join(
            n for n, v in (("pkg_repository_url", repo.url), ("pkg_fingerprints_dir", repo.fingerprints_dir)) if not v
        )
        raise SupplyError(
            f"the first-party pkg repository is not configured ({missing} unset): a {tier} tenant's jail installs "
            "its packages from it only; set it in colibri.toml (runbooks/first-party-packages.md)"
        )
    trusted = _fingerprint_files(repo.fingerprints_dir, "trusted", required=True)
    revoked = _fingerprint_files(repo.fingerprints_dir, "revoked", required=False)
    left = {h for _, h in trusted.values()} - {h for _, h in revoked.values()}
    if not left:
        raise SupplyError(f"every trusted fingerprint in {repo.fingerprints_dir} is also revoked: no key is left")
    return (
        repo.url,
        {n: data for n, (data, _) in trusted.items()},
        {n: data for n, (data, _) in revoked.items()},
    )


def stage(root: Path, repo: FirstPartyRepo, tier: str) -> None:
    """Write the jail's pkg configuration and fingerprints under its root (no symlink followed)."""
    url, trusted, revoked = check(repo, tier)
    try:
        for which, files in (("trusted", trusted), ("revoked", revoked)):
            if jailfs.exists(root, f"{FINGERPRINTS}/{which}"):
                jailfs.remove(root, f"{FINGERPRINTS}/{which}", tree=True)  # exactly the host's set
            # revoked/ too, even empty: pkg(7)'s verify_signature() refuses without it
            with jailfs.open_dir(root, f"{FINGERPRINTS}/{which}", create=True):
                pass
            for name, data in files.items():
                jailfs.write_file(root, f"{FINGERPRINTS}/{which}/{name}", data, mode=0o644)
        jailfs.write_file(root, REPO_CONF, repo_conf(url), mode=0o644)
        if tier == "paid":
            jailfs.write_file(root, FREEBSD_CONF, FREEBSD_OFF, mode=0o644)
        elif jailfs.exists(root, FREEBSD_CONF):
            jailfs.remove(root, FREEBSD_CONF)
    except JailError as exc:
        raise SupplyError(f"cannot write the jail's pkg configuration: {exc}") from None
