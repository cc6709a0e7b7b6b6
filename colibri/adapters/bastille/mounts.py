"""nullfs mounts into a bastille jail, and the proof of them (mixed into ``Bastille``).

A mount is a line in the jail's fstab (bastille 1.4.4 mount.sh appends it, then runs ``mount -F
fstab -a``, whose failure is only an error_continue, exit 0) and, while the jail runs, an entry in
the host's live mount table (``mount -p -t nullfs``): each is checked, never bastille's exit code.
"""

import os
from pathlib import Path

from colibri.adapters import jailfs
from colibri.adapters.bastille import argv as bastille_argv
from colibri.adapters.bastille.core import BastilleCore
from colibri.adapters.jail import Mount
from colibri.adapters.locks import host_lock
from colibri.errors import BastilleError


class Mounts(BastilleCore):
    _locks: Path

    def mount(self, name: str, mount: Mount) -> None:
        """A nullfs mount recorded in the jail's fstab (applied by ``bastille mount`` when running,
        by jail(8)'s mount.fstab at the next start otherwise).  On a running jail the mount is
        checked live too: bastille 1.4.4 mount.sh appends the fstab line *before* ``mount -F fstab
        -a``, and a failed mount there is only an error_continue (exit 0), so a line alone proves
        nothing.  A line left without its live mount is taken out again."""
        with host_lock(self._locks, "bastille"):
            self._require(name)
            target = self._target(name, mount.jail_path)
            options = "ro" if mount.read_only else "rw"
            line = f"{mount.host_path} {target} nullfs {options} 0 0"
            present = self._fstab_has(name, target)
            running = self._running(name)
            if present and (not running or self._live(name, mount)):
                return
            if present:  # in the fstab but not mounted (added while it ran): add it again, live
                self._fstab_drop(name, target)
            with jailfs.open_dir(self.root(name), mount.jail_path, create=True):
                pass
            if running:
                result = self._bastille_run(*bastille_argv.mount(name, str(mount.host_path), mount.jail_path, options))
                if not self._fstab_has(name, target):
                    raise self._fail(f"mount {name}", result)
                escaped = self._unmount_elsewhere(name, str(mount.host_path), mount.jail_path)
                if escaped or not self._live(name, mount):
                    self._fstab_drop(name, target)
                    error = self._fail(f"mount {name}", result)
                    where = f"; it was mounted on {', '.join(escaped)} instead, unmounted again" if escaped else ""
                    raise BastilleError(
                        f"{error} ({mount.host_path} is not mounted on {target}{where}; nothing was kept)"
                    )
                return
            fstab = self.jails_dir / name / "fstab"
            try:
                with fstab.open("a") as handle:
                    handle.write(line + "\n")
            except OSError as exc:
                raise BastilleError(f"cannot add the mount to {fstab}: {exc.strerror}") from None

    def umount(self, name: str, jail_path: str) -> bool:
        """``bastille umount NAME PATH`` on a running jail (it unmounts, then drops the fstab line);
        on a stopped one bastille does nothing ("Jail is not running.", exit 0: umount.sh), so the
        line is dropped here.  Verified: no line and no live mount afterwards."""
        with host_lock(self._locks, "bastille"):
            self._require(name)
            target = self._target(name, jail_path)
            live = self._mounted_on(name, jail_path)
            if not self._fstab_has(name, target) and not (live and self._running(name)):
                return False
            sources = [ln.split()[0] for ln in self._fstab_lines(name) if ln.split()[1:2] == [target]]
            sources += [m[0] for m in live]
            if self._running(name):
                result = self._bastille_run(*bastille_argv.umount(name, jail_path))
                if self._fstab_has(name, target) or self._mounted_on(name, jail_path):
                    raise self._fail(f"umount {name} {jail_path} (the mount is still there)", result)
                for source in dict.fromkeys(sources):
                    self._unmount_elsewhere(name, source, jail_path)
            else:
                self._fstab_drop(name, target)
            return True

    def is_mounted(self, name: str, mount: Mount) -> bool:
        return self._running(name) and self._live(name, mount)

    def processes(self, name: str) -> list[tuple[int, str]]:
        """The running jail's processes from the host's ps (a jail's pid is the host's)."""
        if not self._running(name):
            return []
        result = self._run(bastille_argv.ps_jail(name), env=self._env(), timeout=30, ok_codes=(0, 1))
        rows = [ln.strip().split(None, 1) for ln in result.out.splitlines()]
        return [(int(r[0]), r[1] if len(r) > 1 else "") for r in rows if r and r[0].isdigit()]

    # ---- fstab and the host's mount table ---------------------------------------------------------
    def _target(self, name: str, jail_path: str) -> str:
        return str(self.root(name)) + "/" + jail_path.lstrip("/")

    def _fstab_lines(self, name: str) -> list[str]:
        fstab = self.jails_dir / name / "fstab"
        try:
            return fstab.read_text().splitlines() if fstab.exists() else []
        except OSError as exc:
            raise BastilleError(f"cannot read {fstab}: {exc.strerror}") from None

    def _fstab_has(self, name: str, target: str) -> bool:
        return any(ln.split()[1:2] == [target] for ln in self._fstab_lines(name) if not ln.lstrip().startswith("#"))

    def _fstab_drop(self, name: str, target: str) -> None:
        fstab = self.jails_dir / name / "fstab"
        kept = [ln for ln in self._fstab_lines(name) if ln.split()[1:2] != [target] or ln.lstrip().startswith("#")]
        try:
            tmp = fstab.with_name(".fstab.colibri")
            tmp.write_text("".join(ln + "\n" for ln in kept))
            tmp.replace(fstab)
        except OSError as exc:
            raise BastilleError(f"cannot rewrite {fstab}: {exc.strerror}") from None

    def _host_mounts(self) -> list[list[str]]:
        """The host's nullfs mounts from ``mount -p -t nullfs`` (mount(8): one fstab(5)-format line
        per mounted file system, from the kernel's table: sbin/mount/mount.c putfsent)."""
        result = self._run(bastille_argv.mounts_nullfs(), env=self._env(), timeout=30, ok_codes=(0, 1))
        if result.exit_code != 0:
            raise self._fail("mount -p (the host's mount table)", result)
        return [ln.split() for ln in result.out.splitlines() if len(ln.split()) >= 3]

    def _mounted_on(self, name: str, jail_path: str) -> list[list[str]]:
        """The host's live nullfs mounts on ``jail_path`` of the jail.  The kernel keeps the path
        mount(2) resolved, so a symlinked prefix shows as its target; only the host's part is
        resolved here, nothing inside the jail root is followed."""
        targets = {self._target(name, jail_path)}
        targets.add(f"{os.path.realpath(self.jails_dir)}/{name}/root/{jail_path.lstrip('/')}")
        return [m for m in self._host_mounts() if m[1] in targets]

    def _unmount_elsewhere(self, name: str, source: str, jail_path: str) -> list[str]:
        """Every live mount of ``source`` that is not on ``jail_path`` of the jail (mount.sh has no
        symlink check and ``mount -F fstab -a`` runs as host root: root in a running jail can swap
        the mount point for a symlink between colibri's check and the mount), unmounted again by
        the path the kernel recorded; returns those paths.  BastilleError when one stays."""
        sources = {source, os.path.realpath(source)}
        targets = {
            self._target(name, jail_path),
            f"{os.path.realpath(self.jails_dir)}/{name}/root/{jail_path.lstrip('/')}",
        }
        escaped = [m[1] for m in self._host_mounts() if m[0] in sources and m[1] not in targets]
        for path in escaped:
            self._run(bastille_argv.umount_host(path), env=self._env(), timeout=30, ok_codes=(0, 1))
        left = [m[1] for m in self._host_mounts() if m[0] in sources and m[1] in escaped]
        if left:
            raise BastilleError(f"{source} is mounted on {', '.join(left)}, outside jail {name}, and umount failed")
        return escaped

    def _live(self, name: str, mount: Mount) -> bool:
        sources = {str(mount.host_path), os.path.realpath(mount.host_path)}
        return any(m[0] in sources for m in self._mounted_on(name, mount.jail_path))
