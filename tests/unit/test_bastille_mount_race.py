"""Review of issue 9: the Bastille adapter's live socket mount against a tenant that is root in a
running jail (an adopted one, above all), and its rc.conf rewrite.  Unit level: colibri's real
Bastille adapter over a fake runner that answers as a FreeBSD host would (the emulator binds
inside a bubblewrap namespace and resolves jail paths itself, so it cannot show a host mount).

The fake's ``bastille mount`` does what bastille 1.4.4 mount.sh does (read from
BastilleBSD/bastille usr/local/share/bastille/mount.sh): no symlink check at all, ``[ -d FULL ]``
(follows a symlink), the fstab line appended, then ``mount -F fstab -a`` run by host root, whose
namei resolves a symlink under the jail root against the HOST's root.  The tenant wins the race
between colibri's fd-walk check (jailfs.open_dir, create=True) and that mount by swapping
/var/run/colibri for a symlink; the fake lets it win deterministically.

    .venv/bin/pytest tests/probes/test_review9_bastille_mount.py --runxfail -q
"""

import os
import shlex
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

import pytest

from colibri.adapters.bastille.backend import Bastille
from colibri.adapters.jail import Mount
from colibri.adapters.runner import CommandResult
from colibri.errors import ColibriError


class FreeBSDHost:
    """jls / bastille list, mount, umount / mount -p, as a FreeBSD host answers them."""

    def __init__(self, prefix: Path, name: str, outside: Path) -> None:
        self.prefix, self.name, self.outside = prefix, name, outside
        self.table: list[tuple[str, str]] = []  # (from, on) as the kernel records them
        self.tenant_wins_race = True

    def __call__(
        self,
        argv: Sequence[str],
        *,
        stdin: bytes | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float = 120.0,
        ok_codes: Collection[int] = (0,),
        secret_output: bool = False,
    ) -> CommandResult:
        args = list(argv)
        if args[:2] == ["bastille", "--version"]:
            return self._ok(args, "", "1.4.4.250828\n")
        if args[:3] == ["bastille", "list", "jails"]:
            return self._ok(args, self.name + "\n")
        if args[0] == "jls":
            return self._ok(args, self.name + "\n")
        if args[:3] == ["mount", "-p", "-t"]:
            return self._ok(args, "".join(f"{src}\t{on}\tnullfs\trw\t0 0\n" for src, on in self.table))
        if args[:2] == ["bastille", "mount"]:
            _, _, jail, host, jail_path, fstype, opts, dump, pas = args
            root = self.prefix / "jails" / jail / "root"
            full = f"{root}/{jail_path.lstrip('/')}"
            if self.tenant_wins_race:  # root in the jail, between colibri's check and mount.sh
                os.rmdir(full)
                os.symlink(str(self.outside), full)
            if not os.path.isdir(full):
                os.makedirs(full)
            with open(self.prefix / "jails" / jail / "fstab", "a") as fh:
                fh.write(f"{host} {full} {fstype} {opts} {dump} {pas}\n")
            # mount -F fstab -a as host root: mount(2) gets the path resolved from the host's /
            self.table.append((host, os.path.realpath(full)))
            return self._ok(args, f"Added: {host} {full} {fstype} {opts} {dump} {pas}\n")
        if args[:2] == ["umount", "-f"]:  # umount(8) on the host, by the path the kernel recorded
            self.table = [m for m in self.table if m[1] != args[2]]
            return self._ok(args, "")
        if args[:2] == ["bastille", "umount"]:
            _, _, jail, jail_path = args
            full = f"{self.prefix}/jails/{jail}/root/{jail_path.lstrip('/')}"
            self.table = [m for m in self.table if m[1] != full]
            return self._ok(args, "")
        raise AssertionError(f"unexpected command: {shlex.join(args)}")

    @staticmethod
    def _ok(argv: list[str], out: str, err: str = "") -> CommandResult:
        return CommandResult(tuple(argv), 0, out.encode(), err.encode())


def _host(tmp_path: Path) -> tuple[Bastille, FreeBSDHost, Path, Mount]:
    prefix = tmp_path / "bastille"
    root = prefix / "jails" / "demo" / "root"
    (root / "var/run").mkdir(parents=True)
    (prefix / "jails" / "demo" / "fstab").write_text("")
    outside = tmp_path / "host-etc"  # stands for the host's /etc
    outside.mkdir()
    (outside / "rc.conf").write_text("sshd_enable=YES\n")
    host = FreeBSDHost(prefix, "demo", outside)
    backend = Bastille(
        host,
        bastille="bastille",
        prefix=prefix,
        release="14.3-RELEASE",
        config=None,
        locks_dir=tmp_path / "locks",
        intents_dir=tmp_path / "intents",
        templates_source=tmp_path,
    )
    (tmp_path / "locks").mkdir()
    sockets = tmp_path / "agents" / "demo"
    sockets.mkdir(parents=True)
    return backend, host, outside, Mount(sockets, "/var/run/colibri", read_only=False)


def test_a_live_mount_never_leaves_a_host_mount_outside_the_jail(tmp_path: Path) -> None:
    """colibri/adapters/bastille/backend.py Bastille.mount: open_dir(create=True) checks the
    mount point, then hands the path *string* to ``bastille mount`` on a running jail.  Today:
    the tenant's socket directory ends up mounted (rw) over the host directory the symlink
    names; colibri sees no live mount on the target, drops its fstab line, says "nothing was
    kept" -- and leaves the host mount in place (umount() finds neither line nor target)."""
    backend, host, _, mount = _host(tmp_path)
    with pytest.raises(ColibriError):
        backend.mount("demo", mount)  # colibri notices something went wrong ...
    backend.umount("demo", mount.jail_path)  # ... and the undo of a failed adoption runs
    escaped = [m for m in host.table if not m[1].startswith(str(backend.root("demo")) + "/")]
    # Observed today: [(<tmp>/agents/demo, <tmp>/host-etc)] -- the host's "/etc" is covered.
    assert escaped == [], escaped


def test_control_without_the_race_the_mount_is_inside_the_jail(tmp_path: Path) -> None:
    """The same fake without the tenant's swap: colibri's mount is live on its target (the probe
    above fails for the race alone, not for the fake)."""
    backend, host, _, mount = _host(tmp_path)
    host.tenant_wins_race = False
    backend.mount("demo", mount)
    assert host.table == [(str(mount.host_path), str(backend.root("demo") / "var/run/colibri"))]
    assert backend.is_mounted("demo", mount)


def test_enabling_the_mother_changes_nothing_else_in_rc_conf(tmp_path: Path) -> None:
    """Bastille.enable_service decodes the jail's /etc/rc.conf with errors="replace" and splits
    it with str.splitlines() (which also splits on \\x0b \\x0c \\x1c-\\x1e \\x85 \\u2028): an
    adopted jail's rc.conf with a latin-1 comment comes back with U+FFFD in it (and a CRLF file
    loses its CRs).  sysrc(8), which the docstring cites, edits only its own line."""
    backend, _, _, _ = _host(tmp_path)
    rc_conf = backend.root("demo") / "etc/rc.conf"
    rc_conf.parent.mkdir()
    original = b'# J\xf6rg\'s jail (latin-1)\nhostname="demo"\n'
    rc_conf.write_bytes(original)
    assert backend.enable_service("demo", "colibri_mother", True)
    # Observed today: b'# J\xef\xbf\xbdrg\'s jail (latin-1)\nhostname="demo"\ncolibri_mother_enable="YES"\n'
    assert rc_conf.read_bytes() == original + b'colibri_mother_enable="YES"\n'
    assert backend.enable_service("demo", "colibri_mother", False)
    assert rc_conf.read_bytes() == original
