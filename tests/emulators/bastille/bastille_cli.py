"""Emulator of BastilleBSD ``bastille`` 1.4.4 for Linux test machines (stdlib only).

Behaviour follows /work/shared/reference/bastille.md (cited as "ref §N") and the 1.4.4 sources
(usr/local/bin/bastille, usr/local/share/bastille/*.sh). What is and is not emulated, the state
layout and the BASTILLE_EMU_* knobs are described in ../README.md.
"""

from __future__ import annotations

import contextlib
import datetime
import fnmatch
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent / "jailbin"))
import kernel as K
import state as S
from _freebsd import sysrc_main

VERSION = os.environ.get("BASTILLE_EMU_VERSION", "1.4.4")  # ref §1.1 BASTILLE_VERSION
ETC_DIR = os.environ.get("BASTILLE_EMU_ETCDIR", "/usr/local/etc/bastille")  # where -c FILE is looked up

MAIN_USAGE = """\t
Bastille is an open-source system for automating deployment and management of
containerized applications on FreeBSD.

Usage:
  bastille [option(s)] COMMAND [option(s)] TARGET ARGS

Available Commands:
  bootstrap   Bootstrap a release or template(s).
  clone       Clone an existing jail.
  cmd         Execute command(s) inside jail(s).
  config      Get, set, add or remove properties from jail(s).
  console     Console into a jail.
  convert     Convert a jail from thin to thick; convert a jail to a custom release.
  cp          Copy file(s)/directorie(s) from host to jail(s).
  create      Create a jail.
  destroy     Destroy jail(s) or release(s).
  edit        Edit jail configuration files (advanced).
  etcupdate   Update /etc for jail(s).
  export      Export a jail.
  help        Help for any command.
  htop        Interactive process viewer (requires htop).
  import      Import a jail.
  jcp         Copy file(s)/directorie(s) from jail to jail(s).
  limits      Apply resources limits to jail(s). See rctl(8) and cpuset(1).
  list        List jails, releases, templates and more...
  migrate     Migrate jail(s) to a remote system.
  monitor     Monitor and attempt to restart jail service(s).
  mount       Mount file(s)/directorie(s) inside jail(s).
  network     Add or remove interface(s) from jail(s).
  pkg         Manage packages inside jail(s). See pkg(8).
  rcp         Copy file(s)/directorie(s) from jail to host.
  rdr         Redirect host port to jail port.
  rename      Rename a jail.
  restart     Restart a jail.
  service     Manage services within jail(s).
  setup       Auto-configure network, firewall, storage and more...
  start       Start stopped jail(s).
  stop        Stop running jail(s).
  sysrc       Edit rc files inside jail(s).
  tags        Add or remove tags to jail(s).
  template    Apply templates to jail(s).
  top         Process viewer. See top(1).
  umount      Unmount file(s)/directorie(s) from jail(s).
  update      Update a jail or release.
  upgrade     Upgrade a jail to new release.
  verify      Compare release against a "known good" index.
  zfs         Manage ZFS options/attributes for jail(s).

Use "bastille -v|--version" for version information.
Use "bastille command -h|--help" for more information about a command.
Use "bastille -c|--config FILE command" to specify a non-default config file.

"""

# ref §1.1: the 39 commands of the dispatcher, with its aliases.
COMMANDS = [
    "bootstrap",
    "clone",
    "cmd",
    "config",
    "console",
    "convert",
    "cp",
    "create",
    "destroy",
    "edit",
    "etcupdate",
    "export",
    "htop",
    "import",
    "jcp",
    "limits",
    "list",
    "migrate",
    "monitor",
    "mount",
    "network",
    "pkg",
    "rcp",
    "rdr",
    "rename",
    "restart",
    "service",
    "setup",
    "start",
    "stop",
    "sysrc",
    "tags",
    "template",
    "top",
    "umount",
    "update",
    "upgrade",
    "verify",
    "zfs",
]
ALIASES = {"destory": "destroy", "limit": "limits", "net": "network", "unmount": "umount"}

# Per-command usage text (ref §2): first lines go to stderr (error_notify), options to stdout.
USAGES = {
    "bootstrap": (
        ["Usage: bastille bootstrap [option(s)] RELEASE [ARCH]", "                                      TEMPLATE"],
        "\n    Options:\n\n    -p | --pkgbase           Bootstrap using pkgbase (15.0-RELEASE and above).\n"
        "    -u | --update            Update a release when bootstrapping.\n"
        "    -x | --debug             Enable debug mode.\n\n",
    ),
    "create": (
        ["Usage: bastille create [option(s)] NAME RELEASE IP [INTERFACE]"],
        """
    Options:

    -B | --bridge                   Enable VNET. INTERFACE must be a bridge.
    -C | --clone                    Create a clone jail (ZFS only).
    -D | --dual                     Use dual (IPv4+6) networking (IP=[inherit|ip_hostname] only).
    -E | --empty                    Create an empty jail (NAME only).
    -g | --gateway IP               Specify a default router/gateway.
    -L | --linux                    Create a Linux jail (experimental).
    -M | --static-mac               Use a static/persistent MAC address (VNET only).
    -n | --nameserver IP            Specify nameserver(s) for the jail. Comma-separated.
         --no-boot                  Set boot=off.
         --no-validate              Do not validate the release name.
         --no-ip                    Create jail without an ip (VNET only).
    -P | --passthrough              Enable VNET. INTERFACE is used as-is.
    -p | --priority VALUE           Set priority value.
    -T | --thick                    Create a thick jail.
         --tags TAG1,TAG2           Apply specified tag(s) to jail. Comma-separated.
    -V | --vnet                     Enable VNET. INTERFACE must be a physical interface.
    -v | --vlan VLANID              Set VLAN ID (VNET only).
    -x | --debug                    Enable debug mode.
    -Z | --zfs-opts zfs,options     Custom zfs options. Comma-separated.

""",
    ),
    "start": (
        ["Usage: bastille start [option(s)] TARGET"],
        "\n    Options:\n\n    -b | --boot            Respect jail boot setting.\n"
        "    -d | --delay VALUE     Time (seconds) to wait after starting each jail.\n"
        "    -v | --verbose         Enable verbose mode.\n    -x | --debug           Enable debug mode.\n\n",
    ),
    "stop": (
        ["Usage: bastille stop [option(s)] TARGET"],
        "\n    Options:\n\n    -f | --force       Force stop jail(s).\n    -v | --verbose     Enable verbose mode.\n"
        "    -x | --debug       Enable debug mode.\n\n",
    ),
    "restart": (
        ["Usage: bastille restart [option(s)] TARGET"],
        "\n    Options:\n\n    -b | --boot            Respect jail boot setting.\n"
        "    -d | --delay VALUE     Time (seconds) to wait after starting each jail.\n"
        "    -i | --ignore          Ignore stopped jails (do not start if stopped).\n"
        "    -v | --verbose         Enable verbose mode.\n    -x | --debug           Enable debug mode.\n\n",
    ),
    "destroy": (
        ["Usage: bastille destroy [option(s)] JAIL", "                                    RELEASE"],
        "\n    Options:\n\n    -a | --auto         Auto mode. Start/stop jail(s) if required.\n"
        "    -c | --no-cache     Do not destroy cache when destroying a release (legacy releases).\n"
        "    -f | --force        Force unmount any mounted datasets when destroying a jail or release (ZFS only).\n"
        "    -y | --yes          Do not prompt. Assume always yes.\n    -x | --debug        Enable debug mode.\n\n",
    ),
    "list": (
        [
            "Usage: bastille list [option(s)] [all|backup|export|import|ip|jail|limit]",
            "                                 [log|path|port|priority|release|snapshot|state|template|type]",
        ],
        "    Options:\n\n    -d | --down       List stopped jails only.\n"
        "    -j | --json       List jails or sub-arg(s) in json format.\n"
        "    -p | --pretty     Print JSON in columns.\n    -u | --up         List running jails only.\n"
        "    -x | --debug      Enable debug mode.\n\n",
    ),
    "cmd": (
        ["Usage: bastille cmd [option(s)] TARGET COMMAND"],
        "\n    Options:\n\n    -a | --auto      Auto mode. Start/stop jail(s) if required.\n"
        "    -x | --debug     Enable debug mode.\n\n",
    ),
    "cp": (
        ["Usage: bastille cp [option(s)] TARGET HOST_PATH JAIL_PATH"],
        "\n    Options:\n\n    -q | --quiet     Suppress output.\n    -x | --debug     Enable debug mode.\n\n",
    ),
    "jcp": (
        ["Usage: bastille jcp [option(s)] SOURCE_JAIL SOURCE_PATH DESTINATION_JAIL DESTINATION_PATH"],
        "\n    Options:\n\n    -q | --quiet     Suppress output.\n    -x | --debug     Enable debug mode.\n\n",
    ),
    "mount": (
        ["Usage: bastille mount [option(s)] TARGET HOST_PATH JAIL_PATH [FS_TYPE FS_OPTIONS DUMP PASS_NUMBER]"],
        "\n    Options:\n\n    -a | --auto      Auto mode. Start/stop jail(s) if required.\n"
        "    -x | --debug     Enable debug mode.\n\n",
    ),
    "umount": (
        ["Usage: bastille umount [option(s)] TARGET JAIL_PATH"],
        "\n    Options:\n\n    -a | --auto      Auto mode. Start/stop jail(s) if required.\n"
        "    -x | --debug     Enable debug mode.\n\n",
    ),
    "sysrc": (
        ["Usage: bastille sysrc [option(s)] TARGET ARGS"],
        "\n    Options:\n\n    -a | --auto      Auto mode. Start/stop jail(s) if required.\n"
        "    -x | --debug     Enable debug mode.\n\n",
    ),
    "service": (
        ["Usage: bastille service [option(s)] TARGET SERVICE ARGS"],
        "\n    Options:\n\n    -a | --auto      Auto mode. Start/stop jail(s) if required.\n"
        "    -x | --debug     Enable debug mode.\n\n",
    ),
    "pkg": (
        ["Usage: bastille pkg [option(s)] TARGET ARGS"],
        "\n    Options:\n\n    -a | --auto      Auto mode. Start/stop jail(s) if required.\n"
        "    -H | --host      Use the host version of pkg.\n    -y | --yes       Assume always yes for pkg.\n"
        "    -x | --debug     Enable debug mode.\n\n",
    ),
    "template": (
        ["Usage: bastille template [option(s)] TARGET|convert TEMPLATE"],
        "\n    Options:\n\n    -a | --auto      Auto mode. Start/stop jail(s) if required.\n"
        "    -x | --debug     Enable debug mode.\n\n",
    ),
    "config": (
        [
            "Usage: bastille config [option(s)] TARGET set|add PROPERTY [VALUE]",
            "                                          get|remove PROPERTY",
        ],
        "\n    Options:\n\n    -x | --debug     Enable debug mode.\n\n",
    ),
    "limits": (
        [
            "Usage: bastille limits [option(s)] TARGET add OPTION VALUE",
            "                                   TARGET remove OPTION",
            "                                   TARGET clear|reset|stats",
            "                                   TARGET list|show [active]",
        ],
        "\n    Example: bastille limits TARGET add memoryuse 1G\n    Example: bastille limits TARGET add cpu 0,1,2\n\n"
        "    Options:\n\n    -a | --auto      Auto mode. Start/stop jail(s) if required.\n"
        "    -l | --log       Enable logging for the specified rule (RCTL only).\n"
        "    -x | --debug     Enable debug mode.\n\n",
    ),
    "tags": (
        [
            "Usage: bastille tags [option(s)] TARGET add|delete TAG1,TAG2",
            "                                 TARGET list [TAG]",
        ],
        "\n    Options:\n\n    -x | --debug     Enable debug mode.\n\n",
    ),
}

RED, GREEN, YELLOW, RESET = "\033[0;31m", "\033[0;32m", "\033[1;33m", "\033[0m"  # ref §1.4 colors.pre.sh

# ref §2.2 create.sh: thin-jail symlinks into /.bastille and the per-jail copies.
THIN_LINKS = (
    "bin boot lib libexec rescue sbin usr/bin usr/include usr/lib usr/lib32 usr/libdata usr/libexec "
    "usr/sbin usr/share usr/src"
)
THIN_COPIES = ".cshrc .profile COPYRIGHT dev etc media mnt net proc root tmp var usr/obj usr/tests"


class Exit(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class Continue(Exception):
    """error_continue: `continue` of the innermost loop (dynamically scoped in FreeBSD sh)."""


def natural_key(s: str) -> list:
    """`ls -v` ordering."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]


def regex_search(pattern: str, text: str, flags: int = 0) -> bool:
    try:
        return re.search(pattern, text, flags) is not None
    except re.error:
        return False


class Bastille:
    def __init__(self, depth: int = 0) -> None:
        self.depth = depth
        self.conf: dict[str, str] = {}
        self.layout: S.Layout | None = None
        self.color = not os.environ.get("NO_COLOR") and sys.stdout.isatty()  # ref §1.4

    # -------------------------------------------------------------------- output (common.sh)
    def out(self, text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    def err(self, text: str) -> None:
        sys.stderr.write(text)
        sys.stderr.flush()

    def c(self, code: str, text: str) -> str:
        return f"{code}{text}{RESET}" if self.color else text

    def error_notify(self, msg: str) -> None:
        self.err(self.c(RED, msg) + "\n")

    def error_exit(self, msg: str) -> None:
        self.error_notify(msg)
        self.out("\n")  # ref §1.5: error_exit also prints an empty line to stdout
        raise Exit(1)

    def error_continue(self, msg: str) -> None:
        self.error_notify(msg)
        raise Continue

    def info(self, level: int, msg: str) -> None:
        # ref §1.5 (1.4.x): levels 1 and 2 go to stderr, level 3 to stdout
        if level == 1:
            self.err(self.c(GREEN, msg) + "\n")
        elif level == 2:
            self.err(msg + "\n")
        else:
            self.out(msg + "\n")

    def warn(self, level: int, msg: str) -> None:
        if level == 1:
            self.err(self.c(YELLOW, msg) + "\n")
        elif level == 3:
            self.out(self.c(YELLOW, msg) + "\n")

    def usage(self, cmd: str) -> None:
        lines, opts = USAGES.get(cmd, ([f"Usage: bastille {cmd} [option(s)] TARGET"], "\n"))
        for line in lines:
            self.error_notify(line)
        self.out(opts)
        raise Exit(1)

    # -------------------------------------------------------------------- fault injection
    def fault(self, cmd: str, point: str | None = None, jail: str | None = None) -> bool:
        """BASTILLE_EMU_FAIL="cmd[:point][@jail],..." (see README)."""
        for spec in filter(None, re.split(r"[,\s]+", os.environ.get("BASTILLE_EMU_FAIL", ""))):
            spec, _, only = spec.partition("@")
            c, _, p = spec.partition(":")
            if c == cmd and (p or None) == point and (not only or only == jail):
                return True
        return False

    # -------------------------------------------------------------------- checks (ref §1.2)
    def root_check(self) -> None:
        uid = int(os.environ.get("BASTILLE_EMU_UID", os.geteuid()))
        if uid != 0:
            self.error_notify("Bastille: Permission Denied")
            self.error_exit("root / sudo / doas required")

    @property
    def L(self) -> S.Layout:
        assert self.layout is not None
        return self.layout

    def jailsdir(self) -> str:
        return self.L.jailsdir

    # -------------------------------------------------------------------- main (usr/local/bin/bastille)
    def main(self, argv: list[str]) -> int:
        try:
            self._main(argv)
            return 0
        except Exit as e:
            return e.code
        except Continue:
            return 0
        except BrokenPipeError:
            return 1

    def _main(self, argv: list[str]) -> None:
        config = os.environ.get("BASTILLE_CONFIG") or S.DEFAULT_CONFIG
        os.environ["BASTILLE_CONFIG"] = config
        if not os.access(config, os.R_OK):
            if any(re.search(r"\bsetup\b", a) for a in argv):
                self.err("bastille-emulator: 'setup' is not emulated\n")
                raise Exit(1)
            self.out("\n[ERROR]: No config file found!\nPlease run 'bastille setup' to configure Bastille.\n\n")
            raise Exit(1)
        self.load_config(config)
        self.perms_check()
        while argv:
            a = argv[0]
            if a in ("-h", "--help", "help"):
                self.out(MAIN_USAGE)
                raise Exit(1)
            if a in ("version", "-v", "--version"):
                self.info(1, VERSION)  # ref §1.5: 1.4.x prints the version on stderr
                raise Exit(0)
            if a in ("-c", "--config"):
                name = argv[1] if len(argv) > 1 else ""
                path = f"{ETC_DIR}/{name}"
                # ref §1.3: -c only takes a name relative to /usr/local/etc/bastille
                if name and os.access(path, os.R_OK):
                    self.info(1, f"Using custom config: {path}")
                    os.environ["BASTILLE_CONFIG"] = path
                    self.load_config(path)
                else:
                    self.error_exit(f"Not a valid config file: {name}")
                argv = argv[2:]
                continue
            if a.startswith("-"):
                self.error_exit(f'Unknown Option: "{a}"')
            break
        if not argv:
            self.out(MAIN_USAGE)
            raise Exit(1)
        cmd = ALIASES.get(argv[0], argv[0])
        if cmd not in COMMANDS:
            self.out(MAIN_USAGE)
            raise Exit(1)
        os.umask(int(os.environ.get("UMASK", "022"), 8))
        handler = getattr(self, "cmd_" + cmd, None)
        if handler is None:
            self.err(f"bastille-emulator: '{cmd}' is not emulated (see tests/emulators/bastille/README.md)\n")
            raise Exit(1)
        handler(argv[1:])

    def load_config(self, path: str) -> None:
        self.conf = S.load_config(path)
        self.layout = S.Layout(self.conf)

    def perms_check(self) -> None:
        # ref §1.2 bastille_perms_check. NOTE: in the real 1.4.4 script this runs before the config
        # is sourced, so ${bastille_prefix} is empty and the check never fires; the emulator applies
        # it as documented unless BASTILLE_EMU_PERMS_CHECK=0 (see README).
        if os.environ.get("BASTILLE_EMU_PERMS_CHECK", "1") == "0":
            return
        prefix = self.L.prefix
        if prefix and os.path.isdir(prefix):
            mode = os.stat(prefix).st_mode
            if f"{mode:o}" != "40750":
                self.error_notify(f"Insecure permissions on {prefix}")
                self.error_exit(f"Try: chmod 0750 {prefix}")

    def nested(self, argv: list[str]) -> int:
        """`bastille ARGS` run from inside a subcommand (same process, same streams)."""
        return Bastille(self.depth + 1).main(argv)

    # -------------------------------------------------------------------- option parsing helpers
    def parse_opts(
        self,
        cmd: str,
        args: list[str],
        flags: dict[str, str],
        valued: dict[str, str] | None = None,
        bundle: str = "",
    ) -> tuple[dict[str, list[str]], list[str]]:
        """The `while case "$1"` loops of the subcommand scripts: long/short names map to a key;
        `-abc` bundles are split letter by letter (`sed 's/-//g' | fold -w1`)."""
        valued = valued or {}
        opts: dict[str, list[str]] = {}
        while args:
            a = args[0]
            if a in ("-h", "--help", "help"):
                self.usage(cmd)
            if a in flags:
                opts.setdefault(flags[a], []).append("")
                args = args[1:]
            elif a in valued:
                opts.setdefault(valued[a], []).append(args[1] if len(args) > 1 else "")
                args = args[2:]
            elif a.startswith("-"):
                for ch in a.replace("-", ""):
                    if ch not in bundle:
                        self.error_exit(f'[ERROR]: Unknown Option: "{a}"')
                    opts.setdefault(flags.get("-" + ch, ch), []).append("")
                args = args[1:]
            else:
                break
        return opts, args

    # -------------------------------------------------------------------- jails and targets (ref §1.7)
    def list_jails(self) -> list[str]:
        """`bastille list jails`: names of jails/* holding a jail.conf, `ls -v` order."""
        try:
            names = os.listdir(self.jailsdir())
        except OSError:
            return []
        return [n for n in sorted(names, key=natural_key) if os.path.isfile(f"{self.jailsdir()}/{n}/jail.conf")]

    def check_target_exists(self, target: str) -> bool:
        return any(regex_search(f"^{target}$", j) for j in self.list_jails())

    def is_running(self, name: str) -> dict | None:
        return S.run_info(self.L, name)

    def jid_name(self, jid: str) -> str | None:
        for name, info in S.running_jails(self.L).items():
            if str(info["jid"]) == jid:
                return name
        return None

    def settings(self, jail: str) -> dict[str, str]:
        try:
            return S.parse_sh_assignments(Path(f"{self.jailsdir()}/{jail}/settings.conf").read_text())
        except OSError:
            return {}

    def sysrc_file(self, path: str, *assignments: str) -> None:
        sysrc_main(["-f", path, *assignments], out=open(os.devnull, "w"), err=open(os.devnull, "w"))  # noqa: SIM115

    def priority_sort(self, jails: list[str], reverse: bool, unique: bool = True) -> list[str]:
        """list_jail_priority | sort -k2 -n: by priority, ties by name; settings.conf defaults added."""
        rows = []
        if not os.path.isdir(self.jailsdir()):
            return []
        for jail in jails:
            f = f"{self.jailsdir()}/{jail}/settings.conf"
            with contextlib.suppress(OSError):
                os.unlink(f"{self.jailsdir()}/{jail}/boot.conf")
            text = Path(f).read_text() if os.path.isfile(f) else ""
            if "boot=" not in text:
                self.sysrc_file(f, "boot=on")
            if "depend=" not in text:
                self.sysrc_file(f, "depend=")
            if "priority=" not in text:
                self.sysrc_file(f, "priority=99")
            prio = self.settings(jail).get("priority", "")
            rows.append((jail, prio))
        if unique:
            rows = sorted(set(rows))

        def key(r: tuple[str, str]) -> tuple:
            m = re.match(r"^\s*(-?\d+)", r[1])
            return (int(m.group(1)) if m else 0, f"{r[0]} {r[1]}")

        rows.sort(key=key, reverse=reverse)
        return [r[0] for r in rows]

    def set_target(self, target: str, reverse: bool = False) -> list[str]:
        if re.match(r"^[aA][lL][lL]$", target):
            jails = [j for j in self.list_jails() if os.path.isdir(f"{self.jailsdir()}/{j}")]
            if not jails:
                raise Exit(1)
            return self.priority_sort(jails, reverse, unique=False)
        found: list[str] = []
        for word in target.split():
            try:
                found += self._resolve_word(target, word)
            except Continue:
                continue
        if not found:
            raise Exit(1)
        return self.priority_sort(" ".join(found).split(), reverse)

    def _resolve_word(self, target: str, word: str) -> list[str]:
        jd = self.jailsdir()
        if not os.path.isdir(f"{jd}/{target}") and re.fullmatch(r"[0-9]+", word):
            # ref §1.7.3: all digits = a JID
            name = self.jid_name(word)
            if name is None:
                self.error_continue(f'Error: JID "{word}" not found. Is jail running?')
            return [name or ""]
        if self.check_target_exists(word):
            return [word]
        # ref §1.7.5: prefix autocomplete (grep -E "^${target}")
        matches = [j for j in self.list_jails() if regex_search(f"^{word}", j)]
        if len(matches) == 1:
            return matches
        if len(matches) > 1:
            self.error_continue(f"Multiple jails found for {word}:\n" + "\n".join(matches))
        # ref §1.7.6: tags (grep -w in jails/*/tags)
        tagged = []
        for j in sorted(os.listdir(jd)) if os.path.isdir(jd) else []:
            try:
                text = Path(f"{jd}/{j}/tags").read_text()
            except OSError:
                continue
            if regex_search(rf"(?<![A-Za-z0-9_])(?:{word})(?![A-Za-z0-9_])", text, re.M):
                tagged.append(j)
        if tagged:
            return tagged
        self.error_continue(f'Jail not found "{word}"')
        return []

    def set_target_single(self, target: str) -> str:
        if target in ("ALL", "all"):
            self.error_exit("[all|ALL] not supported with this command.")
        if len(target.split()) > 1:
            self.error_exit("Error: Command only supports a single TARGET.")
        if not os.path.isdir(f"{self.jailsdir()}/{target}") and re.fullmatch(r"[0-9]+", target):
            name = self.jid_name(target)
            if name is None:
                self.error_exit(f'Error: JID "{target}" not found. Is jail running?')
            return name or ""
        if not self.check_target_exists(target):
            matches = [j for j in self.list_jails() if regex_search(f"^{target}", j)]
            if len(matches) == 1:
                return matches[0]
            if not matches:
                self.error_exit(f'Jail not found "{target}"')
            self.error_notify(f"Multiple jails found for {target}:\n" + "\n".join(matches))
            raise Exit(1)
        return target

    def for_each(self, jails: list[str], fn) -> None:  # type: ignore[no-untyped-def]
        for jail in jails:
            try:
                fn(jail)
            except Continue:
                continue

    def require_running(self, jail: str, auto: bool) -> None:
        """`check_target_is_running || if AUTO; then bastille start; else ...; error_continue`."""
        if self.is_running(jail):
            return
        if auto:
            self.nested(["start", jail])
            return
        self.info(1, f"\n[{jail}]:")
        self.error_notify("Jail is not running.")
        self.error_continue("Use [-a|--auto] to auto-start the jail.")

    def jail_conf(self, jail: str) -> dict[str, str | None]:
        return S.jail_params(self.L.jail_dir(jail) / "jail.conf")

    # -------------------------------------------------------------------- emulated host network
    def host_interfaces(self) -> list[str]:
        return os.environ.get("BASTILLE_EMU_INTERFACES", "lo0 em0 bastille0 bridge0").split()

    def host_bridges(self) -> list[str]:
        return os.environ.get("BASTILLE_EMU_BRIDGES", "bridge0").split()

    def ips_in_use(self) -> set[str]:
        """What `ifconfig` shows: lo0's addresses plus the addresses of running jails."""
        ips = {"127.0.0.1", "::1"} | set(os.environ.get("BASTILLE_EMU_HOST_IPS", "").split())
        for info in S.running_jails(self.L).values():
            for key in ("ip4.addr", "ip6.addr"):
                for item in (info["params"].get(key) or "").split(","):
                    if item:
                        ips.add(item.split("|")[-1].split("/")[0])
        return ips

    # ==================================================================== bootstrap (ref §2.1)
    def cmd_bootstrap(self, args: list[str]) -> None:
        _, args = self.parse_opts(
            "bootstrap",
            args,
            {"-u": "u", "--update": "u", "-p": "p", "--pkgbase": "p", "-x": "x", "--debug": "x"},
            bundle="px",
        )
        release = args[0] if args else ""
        self.root_check()
        if re.match(r"^https?://[^/]+/[^/]+/", release) or release.startswith("git@"):
            self.error_notify("bastille-emulator: bootstrapping templates from git is not emulated")
            raise Exit(1)
        name = self.normalize_release(release, bootstrap=True)
        if name is None:
            self.usage("bootstrap")
        assert name is not None
        L = self.L
        if not os.path.isdir(L.prefix):
            os.makedirs(L.prefix)
            os.chmod(L.prefix, 0o750)
        for d in (L.backupsdir, L.cachedir, L.jailsdir, L.logsdir, L.templatesdir, L.releasesdir):
            if d and not os.path.isdir(d):
                os.makedirs(d)
                if d == L.backupsdir:
                    os.chmod(d, 0o750)
        os.makedirs(f"{L.cachedir}/{name}", exist_ok=True)
        rel = Path(f"{L.releasesdir}/{name}")
        if (rel / "COPYRIGHT").is_file():
            self.info(1, "\nBootstrap appears complete!\n")
            raise Exit(0)
        self.info(1, f"\nBootstrapping FreeBSD release: {name}")
        if self.fault("bootstrap"):
            self.error_notify("Unable to fetch MANIFEST. See 'bootstrap urls'.")
            shutil.rmtree(rel, ignore_errors=True)
            self.error_exit("[ERROR]: Bootstrap failed!")
        self.info(1, "\nFetching distfile: base.txz")
        self.info(1, "\nValidating checksum for archive: base.txz")
        self.info(1, "\nExtracting archive: base.txz")
        make_release_root(rel, name)
        self.info(1, "\nBootstrap successful!")
        self.info(2, "See 'bastille --help' for available commands.\n")

    def normalize_release(self, release: str, bootstrap: bool = False) -> str | None:
        """The `case "${RELEASE}"` name filter of bootstrap.sh/create.sh (FreeBSD forms)."""
        r = release
        if fnmatch.fnmatchcase(r, "[2-4].[0-9]*"):
            return r
        if fnmatch.fnmatchcase(r.lower(), "*-current"):
            m = re.fullmatch(r"([1-9]+)\.[0-9](-CURRENT)", r, re.I)
            return m.group(0).upper() if m else None
        if fnmatch.fnmatchcase(r, "*.*-stable") or fnmatch.fnmatchcase(r, "*.*-STABLE"):
            m = re.fullmatch(r"([1-9]+)\.[0-9](-STABLE)", r, re.I)
            return m.group(0).upper() if m else None
        pats = ["*-release", "*-RELEASE", "*-rc[1-9]", "*-RC[1-9]", "*-beta[1-9]", "*-BETA[1-9]"]
        if not bootstrap:
            pats += ["*-release-I386", "*-RELEASE-i386"]
        if any(fnmatch.fnmatchcase(r, p) for p in pats):
            first = "[0-9]+" if bootstrap else "[1-9]+"
            m = re.fullmatch(rf"({first})\.[0-9](-RELEASE|-RELEASE-i386|-RC[1-9]|-BETA[1-9])", r, re.I)
            return m.group(0).upper().replace("I", "i") if m else None
        if r in ("current", "CURRENT"):
            return "current"
        if fnmatch.fnmatchcase(r, "[1-9]*-stable") or fnmatch.fnmatchcase(r, "[1-9]*-STABLE"):
            return r.replace("STABLE", "stable")
        return None

    # ==================================================================== create (ref §2.2)
    def cmd_create(self, args: list[str]) -> None:
        self.root_check()
        o = {
            "boot": "on",
            "empty": 0,
            "thick": 0,
            "clone": 0,
            "vnet": 0,
            "std": 0,
            "bridge": 0,
            "pass": 0,
            "noip": 0,
            "vlan": "",
            "linux": 0,
            "mac": 0,
            "dual": 0,
            "validate": 1,
            "prio": "99",
            "gw": "",
            "ns": "",
            "tags": "",
        }
        bundled = {
            "B": ("vnet", "bridge"),
            "C": ("clone",),
            "D": ("dual",),
            "E": ("empty",),
            "L": ("linux",),
            "M": ("mac",),
            "P": ("vnet", "pass"),
            "T": ("thick",),
            "V": ("vnet", "std"),
            "x": (),
        }
        longs = {
            "-B": "B",
            "--bridge": "B",
            "-C": "C",
            "--clone": "C",
            "-D": "D",
            "--dual": "D",
            "-E": "E",
            "--empty": "E",
            "-L": "L",
            "--linux": "L",
            "-M": "M",
            "--static-mac": "M",
            "-P": "P",
            "--passthrough": "P",
            "-T": "T",
            "--thick": "T",
            "-V": "V",
            "--vnet": "V",
            "-x": "x",
            "--debug": "x",
        }
        while args:
            a = args[0]
            if a in ("-h", "--help", "help"):
                self.usage("create")
            elif a in longs:
                for k in bundled[longs[a]]:
                    o[k] = 1
                args = args[1:]
            elif a in ("-g", "--gateway", "--defaultrouter"):
                o["gw"] = args[1] if len(args) > 1 else ""
                if o["gw"] and not self.validate_ip_quiet(o["gw"]):
                    raise Exit(1)  # validate_ip's error_exit with >/dev/null 2>&1: a silent exit 1
                args = args[2:]
            elif a in ("-n", "--nameserver"):
                o["ns"] = args[1] if len(args) > 1 else ""
                for ns in o["ns"].replace(",", " ").split():
                    if not self.validate_ip_quiet(ns):
                        raise Exit(1)
                args = args[2:]
            elif a == "--no-boot":
                o["boot"] = "off"
                args = args[1:]
            elif a == "--no-ip":
                o["noip"] = 1
                args = args[1:]
            elif a in ("--no-validate", "no-validate"):
                o["validate"] = 0
                args = args[1:]
            elif a in ("-p", "--priority"):
                val = args[1] if len(args) > 1 else ""
                if not re.search(r"^[0-9]+$", val, re.M):
                    self.error_exit(f'Not a valid priority value: "{val}"')
                o["prio"] = val
                args = args[2:]
            elif a in ("--tag", "--tags"):
                o["tags"] = args[1] if len(args) > 1 else ""
                args = args[2:]
            elif a in ("-v", "--vlan"):
                val = args[1] if len(args) > 1 else ""
                if not re.search(r"^[0-9]+$", val, re.M):
                    self.error_exit(f"Not a valid VLAN ID: {val}")
                o["vlan"] = val
                args = args[2:]
            elif a in ("-Z", "--zfs-opts"):
                args = args[2:]
            elif a.startswith("-"):
                for ch in a.replace("-", ""):
                    if ch not in bundled:
                        self.error_exit(f'[ERROR]: Unknown Option: "{a}"')
                    for k in bundled[ch]:
                        o[k] = 1
                args = args[1:]
            else:
                break
        # ref §2.2: mutual exclusions, in create.sh's order
        if o["empty"]:
            if o["clone"] or o["thick"] or o["vnet"] or o["linux"]:
                self.error_exit("[ERROR]: Empty jail option can't be used with other options.")
        elif o["linux"]:
            if o["vnet"] or o["thick"] or o["clone"]:
                self.error_exit("[ERROR]: Linux jail option can't be used with other options.")
        elif o["clone"] and o["thick"]:
            self.error_exit("[ERROR]: Clonejail and Thickjail can't be used together.")
        elif not o["vnet"] and o["vlan"]:
            self.error_exit("[ERROR]: VLANs can only be used with VNET jails.")
        elif not o["vnet"] and o["noip"]:
            self.error_exit("[ERROR]: [--no-ip] can only be used with VNET jails.")
        elif o["std"] + o["bridge"] + o["pass"] > 1:
            self.error_exit("[ERROR]: Only one of [-V|--vnet], [-B|--bridge] or [-P|--passthrough] can be selected.")
        elif o["pass"] and o["mac"]:
            self.error_exit("[ERROR]: [-P|--passthrough] does not support [-M|--static-mac].")
        iftype = "standard" if o["std"] else "bridge" if o["bridge"] else "passthrough" if o["pass"] else ""
        name = args[0] if args else ""
        release = args[1] if len(args) > 1 else ""
        if o["noip"]:
            ip, iface = "", args[2] if len(args) > 2 else ""
        else:
            ip, iface = (args[2] if len(args) > 2 else ""), (args[3] if len(args) > 3 else "")
        self.info(1, f"\nCreating jail: {name}...")
        if o["empty"]:
            if len(args) != 1:
                self.usage("create")
        elif len(args) > 4 or len(args) < 3:
            self.usage("create")
        if name:
            self.validate_name(name, bool(o["vnet"]))
        vnet_type = self.conf.get("bastille_network_vnet_type", "if_bridge")
        if iftype == "bridge" and iface not in self.host_bridges():
            self.error_exit(f"[ERROR]: Interface is not a bridge: {iface}")
        if iftype == "standard" and iface in self.host_bridges():
            self.error_exit(f"[ERROR]: Interface is a bridge: {iface}")
        if iftype == "passthrough" and iface not in self.host_interfaces():
            self.error_exit(f"[ERROR]: Interface does not exist: {iface}")
        if vnet_type == "netgraph" and iftype == "bridge":
            self.error_exit("[ERROR]: Netgraph does not support the [-B|--bridge] or [-P|--passthrough] option.")
        ipcfg: dict[str, str] = {"ip4": "", "ip6": "", "def4": "", "def6": "", "mode6": "disable"}
        if not o["empty"]:
            if o["validate"]:
                release = self.validate_release(release, bool(o["linux"]))
            if ip:
                ipcfg = self.define_ips(ip, iface, bool(o["vnet"]), bool(o["dual"]))
            if iface:
                self.validate_netif(iface, iftype)
                self.validate_netconf()
            elif o["vnet"]:
                if not self.conf.get("bastille_network_shared"):
                    self.error_exit("[ERROR]: Network interface not set.")
                self.validate_netconf()
            else:
                self.validate_netconf()
        else:
            self.info(1, f"\nCreating empty jail: {name}")
        tdir = self.L.templatesdir
        if tdir and not os.path.lexists(f"{tdir}/default"):
            share = Path(self.L.sharedir) / "templates" / "default"
            if not share.is_dir():
                share = S.SHARE_DIR / "templates" / "default"  # the emulator's copy (README)
            os.makedirs(tdir, exist_ok=True)
            os.symlink(str(share), f"{tdir}/default")
        for key, default in (
            ("base", "default/base"),
            ("empty", "default/empty"),
            ("linux", "default/linux"),
            ("thick", "default/thick"),
            ("clone", "default/clone"),
            ("thin", "default/thin"),
            ("vnet", "default/vnet"),
            ("vlan", "default/vlan"),
        ):
            self.conf.setdefault(f"bastille_template_{key}", default)
        self.create_jail(name, release, ip, iface, iftype, o, ipcfg)

    def validate_name(self, name: str, vnet: bool) -> None:
        # ref §2.2 validate_name: exact messages and order
        if self.check_target_exists(name):
            self.error_exit(f"[ERROR]: Jail already exists: {name}")
        sanity = re.sub(r"[^a-zA-Z0-9_-]", "", name)
        if re.match(r"^[-_]", sanity):
            self.error_exit("[ERROR]: Jail names may not begin with (-|_) characters!")
        elif vnet and re.search(r"[-_]", name):
            self.error_exit("[ERROR]: VNET jail names may not contain (-|_) characters.")
        elif name != sanity:
            self.error_exit("[ERROR]: Jail names may not contain special characters!")
        elif re.fullmatch(r"[0-9]+", name):
            self.error_exit("[ERROR]: Jail names may not contain only digits.")

    def validate_release(self, release: str, linux: bool) -> str:
        linux_names = {
            "Ubuntu_1804": ("ubuntu_bionic", "bionic", "ubuntu-bionic"),
            "Ubuntu_2004": ("ubuntu_focal", "focal", "ubuntu-focal"),
            "Ubuntu_2204": ("ubuntu_jammy", "jammy", "ubuntu-jammy"),
            "Ubuntu_2404": ("ubuntu_noble", "noble", "ubuntu-noble"),
            "Debian10": ("debian_buster", "buster", "debian-buster", "debian10", "Debian10"),
            "Debian11": ("debian_bullseye", "bullseye", "debian-bullseye", "debian11", "Debian11"),
            "Debian12": ("debian_bookworm", "bookworm", "debian-bookworm", "debian12", "Debian12"),
            "Debian13": ("debian_trixie", "trixie", "debian-trixie", "debian23", "Debian13"),
        }
        for verified, forms in linux_names.items():
            if release in forms:
                if not linux:
                    self.error_exit("[ERROR]: Linux releases can only be used with [-l|--linux]")
                return verified
        pats = (
            "[2-4].[0-9]*",
            "*-current",
            "*-CURRENT",
            "*-current-I386",
            "*-CURRENT-i386",
            "*.*-stable",
            "*.*-STABLE",
            "*-release",
            "*-RELEASE",
            "*-release-I386",
            "*-RELEASE-i386",
            "*-rc[1-9]",
            "*-RC[1-9]",
            "*-beta[1-9]",
            "*-BETA[1-9]",
            "current",
            "CURRENT",
            "[1-9]*-stable",
            "[1-9]*-STABLE",
        )
        if not any(fnmatch.fnmatchcase(release, p) for p in pats):
            self.error_notify(f"Unknown release: {release}")
            self.usage("create")
        verified = self.normalize_release(release)
        if not verified:
            self.usage("create")
        assert verified is not None
        if not os.path.isdir(f"{self.L.releasesdir}/{verified}"):
            self.error_notify("[ERROR]: Release must be bootstrapped first.")
            self.error_exit("See 'bastille bootstrap'.")
        return verified

    def validate_ip(self, ip: str, vnet: bool, quiet: bool = False) -> dict[str, str]:
        """common.sh validate_ip: returns {"ip4": ...} or {"ip6": ...}; error_exit on bad input."""
        ip4 = ip.split("/")[0]
        ip6 = ip4 if re.match(r"^(([a-fA-F0-9:]+$)|([a-fA-F0-9:]+/[0-9]{1,3}$)|SLAAC)", ip) else ""
        subnet = ip.split("/")[1] if "/" in ip else ""
        say = (lambda m: None) if quiet else (lambda m: self.info(1, m))
        if ip6:
            if vnet:
                subnet = subnet or "64"
                if not subnet.isdigit() or not 1 <= int(subnet) <= 128:
                    self.error_exit(f"[ERROR]: Invalid subnet: /{subnet}")
                ip6 = f"{ip6}/{subnet}"
            say(f"\nValid IP: {ip6}")
            return {"ip6": ip6}
        if ip in ("inherit", "ip_hostname"):
            say(f"\nValid IP: {ip}")
            return {"ip4": ip, "ip6": ip}
        if ip in ("0.0.0.0", "DHCP", "SYNCDHCP"):
            say(f"\nValid IP: {ip}")
            return {"ip4": ip}
        if ip4:
            if vnet:
                subnet = subnet or "24"
                if not subnet.isdigit() or not 1 <= int(subnet) <= 32:
                    self.error_exit(f"[ERROR]: Invalid subnet: /{subnet}")
                ip4 = f"{ip4}/{subnet}"
            octet = r"([0-9]|[1-9][0-9]|1[0-9]{2}|2[0-4][0-9]|25[0-5])"
            if re.fullmatch(rf"({octet}\.){{3}}{octet}(/([0-9]|[1-2][0-9]|3[0-2]))?", ip4):
                say(f"\nValid IP: {ip4}")
                return {"ip4": ip4}
            self.error_exit(f"[ERROR]: Invalid IP: {ip4}")
        self.error_exit(f"[ERROR]: IP incorrectly formatted: {ip}")
        return {}

    def validate_ip_quiet(self, ip: str) -> bool:
        try:
            self.validate_ip(ip, False, quiet=True)
            return True
        except Exit:
            return False

    def define_ips(self, ips: str, iface: str, vnet: bool, dual: bool) -> dict[str, str]:
        ip4 = ip6 = ""
        for ip in ips.split():
            r = self.validate_ip(ip, vnet)
            ip4 = r.get("ip4", ip4)  # each validate_ip exports IP4_ADDR: the last one wins
            ip6 = r.get("ip6", ip6)
        if ip4:
            if ip4 in ("inherit", "ip_hostname"):
                if vnet:
                    self.error_exit(f"[ERROR]: Unsupported IP option for VNET jail: {ip4}")
            elif ip4 in ("DHCP", "SYNCDHCP", "0.0.0.0"):
                if not vnet:
                    self.error_exit(f"[ERROR]: Unsupported IP option for non-VNET jail: {ip4}")
            elif ip4.split("/")[0] in self.ips_in_use():
                self.warn(1, f"[WARNING]: IP address in use: {ip4}")
        if ip6 == "SLAAC" and not vnet:
            self.error_exit(f"[ERROR]: Unsupported IP option for standard jail: {ip6}")
        loop, shared = self.conf.get("bastille_network_loopback", ""), self.conf.get("bastille_network_shared", "")
        conf_iface = ""
        if not loop and shared:
            conf_iface = shared
        if loop and not shared:
            conf_iface = loop
        if iface:
            conf_iface = iface
        out = {"ip4": ip4, "ip6": ip6, "def4": "", "def6": "", "mode6": "disable", "iface": conf_iface}
        if ip4 == "inherit":
            out["def4"] = f"ip4 = {ip4};"
            if dual:
                out.update(def6=f"ip6 = {ip6};", mode6="new")
            else:
                out["ip6"] = ""
        elif ip4 == "ip_hostname":
            out["def4"] = f"{ip4};"
            if dual:
                out.update(def6=f"{ip6};", mode6="new")
            else:
                out["ip6"] = ""
        elif not vnet:
            if ip4:
                out["def4"] = f"ip4.addr = {conf_iface}|{ip4};"
            if ip6:
                out.update(def6=f"ip6.addr = {conf_iface}|{ip6};", mode6="new")
        return out

    def validate_netif(self, iface: str, iftype: str) -> None:
        if iface not in [*self.host_interfaces(), "VNET"]:
            self.error_exit(f"[ERROR]: Invalid interface: {iface}")
        elif iftype != "standard":
            self.info(1, f"\nValid interface: {iface}")
        if iftype == "standard" and "." in iface:
            self.error_exit("[ERROR]: [-V|--vnet] does not support dots (.) in interface names.")

    def validate_netconf(self) -> None:
        if self.conf.get("bastille_network_loopback") and self.conf.get("bastille_network_shared"):
            self.error_exit("[ERROR]: 'bastille_network_loopback' and 'bastille_network_shared' cannot both be set.")
        vt = self.conf.get("bastille_network_vnet_type", "if_bridge")
        if vt not in ("if_bridge", "netgraph"):
            self.error_exit(f"[ERROR]: 'bastille_network_vnet_type' not set properly: {vt}")

    def vnet_netblock(self, name: str, iftype: str, ext: str, static_mac: bool) -> str:
        """common.sh generate_vnet_jail_netblock (if_bridge and netgraph)."""
        vt = self.conf.get("bastille_network_vnet_type", "if_bridge")
        if len(f"e0a_{name}") < 16:
            host_epair, jail_epair, jib = f"e0a_{name}", f"e0b_{name}", name
        else:
            used = set()
            for j in self.list_jails():
                used |= set(re.findall(r"bastille[0-9]+", (self.L.jail_dir(j) / "jail.conf").read_text()))
            n = 1
            while f"bastille{n}" in used:
                n += 1
            host_epair, jail_epair, jib = f"e0a_bastille{n}", f"e0b_bastille{n}", f"bastille{n}"
        mac = ""
        if static_mac:
            import hashlib

            h = hashlib.sha256(f"0200000000{ext}{name}".encode()).hexdigest()[:5]
            mac = f"58:9c:fc:{h[0:2]}:{h[2:4]}:{h[4]}"
        descr = f"vnet0 host interface for Bastille jail {name}"
        desc = f'  exec.prestart += "ifconfig {host_epair} description \\"{descr}\\"";'
        if iftype == "passthrough":
            return f'  vnet;\n  vnet.interface = {ext};\n  exec.prestop += "ifconfig {ext} -vnet {name}";'
        if vt == "netgraph":
            lines = ["  vnet;", f"  vnet.interface = ng0_{name};", f'  exec.prestart += "jng bridge {name} {ext}";']
            if mac:
                lines.append(f'  exec.prestart += "ifconfig ng0_{name} ether {mac}b";')
            lines.append(f'  exec.poststop += "jng shutdown {name}";')
            return "\n".join(lines)
        lines = ["  vnet;", f"  vnet.interface = {jail_epair};"]
        if iftype == "bridge":
            lines.append(
                f'  exec.prestart += "epair0=\\$(ifconfig epair create) && ifconfig \\${{epair0}} up name {host_epair}'
                f' && ifconfig \\${{epair0%a}}b up name {jail_epair}";'
            )
            lines.append(f'  exec.prestart += "ifconfig {ext} addm {host_epair}";')
        else:
            lines.append(f'  exec.prestart += "jib addm {jib} {ext}";')
        if mac:
            lines.append(f'  exec.prestart += "ifconfig {host_epair} ether {mac}a";')
            lines.append(f'  exec.prestart += "ifconfig {jail_epair} ether {mac}b";')
        lines.append(desc)
        lines.append(f'  exec.poststop += "ifconfig {host_epair} destroy";')
        return "\n".join(lines)

    def create_jail(
        self, name: str, release: str, ip: str, iface: str, iftype: str, o: dict, ipcfg: dict[str, str]
    ) -> None:
        L = self.L
        jdir = L.jail_dir(name)
        root = L.jail_root(name)
        fstab = jdir / "fstab"
        jconf = jdir / "jail.conf"
        log = f"{L.logsdir}/{name}_console.log"
        rel = f"{L.releasesdir}/{release}"
        if not jdir.is_dir():
            root.mkdir(parents=True)
        if o["linux"]:
            self.error_notify("bastille-emulator: Linux jails (-L) are not emulated")
            raise Exit(1)
        thin = not o["thick"] and not o["clone"]
        osrel = ""
        if not o["empty"]:
            version = S.userland_version(Path(rel) / "bin" / "freebsd-version")
            osrel = f'osrelease = "{version}";'
            if thin:
                (root / ".bastille").mkdir(parents=True, exist_ok=True)
                (root / ".template").mkdir(parents=True, exist_ok=True)
            (root / "usr" / "local").mkdir(parents=True, exist_ok=True)
            # post_create_jail: fstab, then jail.conf (ref §3)
            if not fstab.exists():
                fstab.write_text(f"{rel} {root}/.bastille nullfs ro 0 0\n" if thin else "")
            if o["vnet"]:
                conf_iface = iface or self.conf.get("bastille_network_shared", "")
                block = self.vnet_netblock(name, iftype, conf_iface, bool(o["mac"]))
                jconf.write_text(
                    f"{name} {{\n  enforce_statfs = 2;\n  devfs_ruleset = 13;\n  exec.clean;\n"
                    f"  exec.consolelog = {log};\n  exec.start = '/bin/sh /etc/rc';\n"
                    f"  exec.stop = '/bin/sh /etc/rc.shutdown';\n  host.hostname = {name};\n  mount.devfs;\n"
                    f"  mount.fstab = {fstab};\n  path = {root};\n  securelevel = 2;\n  {osrel}\n\n{block}\n}}\n"
                )
            else:
                jconf.write_text(
                    f"{name} {{\n  enforce_statfs = 2;\n  devfs_ruleset = 4;\n  exec.clean;\n"
                    f"  exec.consolelog = {log};\n  exec.start = '/bin/sh /etc/rc';\n"
                    f"  exec.stop = '/bin/sh /etc/rc.shutdown';\n  host.hostname = {name};\n  mount.devfs;\n"
                    f"  mount.fstab = {fstab};\n  path = {root};\n  securelevel = 2;\n  {osrel}\n\n"
                    f"  {ipcfg['def4']}\n  {ipcfg['def6']}\n  ip6 = {ipcfg['mode6']};\n}}\n"
                )
            if thin:
                self.info(1, "\nCreating a thinjail...")
                for link in THIN_LINKS.split():
                    p = root / link
                    if p.is_symlink() or p.exists():
                        p.unlink()
                    os.symlink(f"/.bastille/{link}", p)
                if os.path.isdir(f"{rel}/usr/ports"):
                    (root / "usr" / "ports").mkdir(exist_ok=True)
                    with fstab.open("a") as fh:
                        fh.write(f"{rel}/usr/ports {root}/usr/ports nullfs rw 0 0\n")
                for f in THIN_COPIES.split():
                    src = Path(rel) / f
                    if not (src.is_file() or src.is_dir()):
                        continue
                    if self.fault("create", "after-root", name) or not copy_a(src, root / f):
                        # ref §4.6: the cleanup call has no -y, so non-interactively it stops at
                        # the prompt and the half-created jail (with its jail.conf) stays behind.
                        self.nested(["destroy", "-af", name])
                        self.error_exit("[ERROR]: Failed to copy release files. Please retry create!")
            else:
                if self.fault("create", "after-root", name) or not copy_a(Path(rel + "/"), root, contents=True):
                    self.nested(["destroy", "-afy", name])
                    self.error_exit("[ERROR]: Failed to copy release files. Please retry create!")
            (root / "home").mkdir(exist_ok=True)
            tz = self.conf.get("bastille_tzdata", "")
            lt = root / "etc" / "localtime"
            with contextlib.suppress(OSError):
                if tz:
                    os.symlink(f"/usr/share/zoneinfo/{tz}", lt)
                elif os.path.lexists("/etc/localtime"):
                    if os.path.islink("/etc/localtime"):
                        os.symlink(os.readlink("/etc/localtime"), lt)
                    else:
                        shutil.copy2("/etc/localtime", lt)
            (root / "etc").mkdir(exist_ok=True)
            (root / "etc" / "fstab").touch()
            crontab = root / "etc" / "crontab"
            if crontab.is_file():
                text = re.sub(
                    r"^(.*[0-9],[0-9]{2}.*[0-9]-[0-9].*root.*kerntz -a.*)$",
                    r"#\1 # Disabled by bastille",
                    crontab.read_text(),
                    flags=re.M,
                )
                crontab.write_text(text)
            else:
                self.err("sed: etc/crontab: No such file or directory\n")
        else:
            jconf.write_text(f"{name} {{\n  host.hostname = {name};\n  mount.fstab = {fstab};\n  path = {root};\n}}\n")
            fstab.touch()
        os.chmod(jdir, 0o700)  # ref §2.2 step 4
        settings = str(jdir / "settings.conf")
        self.sysrc_file(settings, f"boot={o['boot']}")
        self.sysrc_file(settings, "depend=")
        self.sysrc_file(settings, f"priority={o['prio']}")
        tpl_empty = self.conf.get("bastille_template_empty", "")
        if not o["empty"] or tpl_empty:
            self.nested(["start", name])
        if not o["empty"] and not self.is_running(name):
            # ref §2.2 step 6: not running -> destroy -afy and fail
            self.nested(["destroy", "-afy", name])
            self.error_exit(f"[ERROR]: Failed to create jail: {name}")
        base_args = [
            "--arg",
            f"BASE_TEMPLATE={self.conf.get('bastille_template_base', '')}",
            "--arg",
            f"HOST_RESOLV_CONF={self.conf.get('bastille_resolv_conf', '')}",
        ]
        if o["vnet"] and self.conf.get("bastille_template_vnet"):
            epair = (self.jail_conf(name).get("vnet.interface") or "").replace("-", "_")
            gw = gw6 = "NO"
            if4 = if6 = ""
            ip4, ip6 = ipcfg.get("ip4", ""), ipcfg.get("ip6", "")
            if ip4:
                if re.search(r"(0[.]0[.]0[.]0|DHCP|SYNCDHCP)", ip4):
                    if4 = "SYNCDHCP"
                else:
                    if4 = f"inet {ip4}"
                    gw = (
                        o["gw"]
                        or self.conf.get("bastille_network_gateway")
                        or os.environ.get("BASTILLE_EMU_DEFAULT_GW", "")
                    )
            if ip6:
                if6 = "inet6 -ifdisabled"
                if "SLAAC" in ip6:
                    if6 += " accept_rtadv"
                else:
                    if6 += f" {ip6}"
                    gw6 = self.conf.get("bastille_network_gateway6") or os.environ.get("BASTILLE_EMU_DEFAULT_GW6", "")
            vnet_name = iface if o["pass"] else "vnet0"
            self.nested(
                [
                    "template",
                    name,
                    self.conf["bastille_template_vnet"],
                    "--arg",
                    f"EXT_INTERFACE={iface}",
                    "--arg",
                    f"INTERFACE={epair}",
                    "--arg",
                    f"VNET={vnet_name}",
                    "--arg",
                    f"GATEWAY={gw}",
                    "--arg",
                    f"GATEWAY6={gw6}",
                    "--arg",
                    f"IFCONFIG={if4}",
                    "--arg",
                    f"IFCONFIG6={if6}",
                ]
            )
            if o["vlan"]:
                self.nested(
                    [
                        "template",
                        name,
                        self.conf.get("bastille_template_vlan", ""),
                        "--arg",
                        f"VLANID={o['vlan']}",
                        "--arg",
                        f"IFCONFIG={if4}",
                    ]
                )
        kind = "thick" if o["thick"] else "clone" if o["clone"] else "empty" if o["empty"] else "thin"
        tpl = self.conf.get(f"bastille_template_{kind}", "")
        if tpl:
            self.nested(["template", name, tpl, *base_args])  # failures are not propagated (ref §2.2)
        if o["ns"]:
            resolv = root / "etc" / "resolv.conf"
            lines = [
                x
                for x in (resolv.read_text().splitlines() if resolv.exists() else [])
                if not x.startswith("nameserver")
            ]
            lines += [f"nameserver {ns}" for ns in o["ns"].replace(",", " ").split()]
            resolv.write_text("\n".join(lines) + "\n")
        if o["tags"]:
            self.nested(["tags", name, "add", o["tags"]])
        if not o["empty"] or tpl_empty:
            rc = self.nested(["restart", name])
            raise Exit(rc)  # ref §2.2: the exit status is the final restart's

    # ==================================================================== start / stop / restart (ref §2.3)
    def cmd_start(self, args: list[str]) -> None:
        opts, args = self.parse_opts(
            "start",
            args,
            {"-b": "b", "--boot": "b", "-v": "v", "--verbose": "v", "-x": "x", "--debug": "x"},
            {"-d": "d", "--delay": "d"},
            bundle="bvx",
        )
        delay = (opts.get("d") or ["0"])[-1]
        if "d" in opts and not delay:
            self.error_exit("[-d|--delay] requires a value.")
        if len(args) != 1:
            self.usage("start")
        self.root_check()
        self.for_each(self.set_target(args[0]), lambda j: self.start_one(j, "b" in opts, delay))

    def start_one(self, jail: str, boot: bool, delay: str) -> None:
        settings = self.settings(jail)
        if boot and settings.get("boot") == "off":
            return
        for dep in settings.get("depend", "").split():
            self.nested(["start", dep])  # start.sh calls check_target_is_running without an argument
        if self.is_running(jail):
            self.info(1, f"\n[{jail}]:")
            self.error_continue("Jail is already running.")
        self.info(1, f"\n[{jail}]:")
        params = self.jail_conf(jail)
        if "vnet" not in params:
            for key in ("ip4.addr", "ip6.addr"):
                for item in filter(None, (params.get(key) or "").split(",")):
                    iface, _, ipaddr = item.rpartition("|")
                    if not iface:
                        iface = "bastille0"  # `bastille config J get interface`
                    if iface not in self.host_interfaces():
                        self.error_continue(f"[ERROR]: {iface} interface does not exist.")
                    if ipaddr.split("/")[0] in self.ips_in_use():
                        self.warn(1, f"[WARNING]: IP address ({ipaddr.split('/')[0]}) already in use, continuing...")
        self.jail_create(jail, params)
        rctl_conf = self.L.jail_dir(jail) / "rctl.conf"  # start.sh: `rctl -a` each line, status ignored
        if rctl_conf.is_file() and rctl_conf.stat().st_size:
            for rule in rctl_conf.read_text().splitlines():
                self.rctl("-a", rule)
        time.sleep(float(delay or 0))

    def jail_create(self, jail: str, params: dict[str, str | None]) -> bool:
        """jail -f jail.conf -c NAME: its own lines go to stdout/stderr; bastille ignores its status."""
        if self.fault("start", None, jail):
            self.err(f"jail: {jail}: exec.prestart: emulated failure (BASTILLE_EMU_FAIL=start)\n")
            return False
        name_in_conf = S.parse_jail_conf(self.L.jail_dir(jail) / "jail.conf")[0]
        if name_in_conf != jail:
            self.err(f'jail: "{jail}" not found\n')
            return False
        if not params.get("path"):
            self.err(f"jail: {jail}: path: not set\n")
            return False
        try:  # jail(8) hands every kernel parameter to jail_set(2): unknown names and bad values fail
            live = K.live_params(params, int(K.sysctl_value("kern.securelevel") or -1))
        except K.JailParamError as exc:
            self.err(f"jail: {jail}: {exc}\n")
            return False
        try:
            info = S.start_sandbox(self.L, jail, params, S.alloc_jid(self.L), live)
        except S.SandboxError as exc:
            self.err(f"jail: {jail}: {exc}\n" if not str(exc).startswith(("jail:", "mount")) else f"{exc}\n")
            self.err(f"jail: {jail}: failed\n")
            return False
        self.out(f"{jail}: created\n")
        log = params.get("exec.consolelog")
        if log:
            with contextlib.suppress(OSError), open(str(log), "a") as fh:
                fh.write(f"bastille-emulator: {jail} started as jid {info['jid']}\n")
        # exec.start = /bin/sh /etc/rc: start the enabled rc.d services (emulated, see README)
        table = S.MountTable.from_json(info["table"])
        for d in ("/etc/rc.d", "/usr/local/etc/rc.d"):
            host = table.host_of(table.resolve(d))
            if host and os.path.isdir(host) and os.listdir(host):
                S.jexec(
                    info,
                    [
                        "/usr/bin/python3",
                        "-c",
                        "import sys; sys.path.insert(0, '/usr/sbin'); import _freebsd; _freebsd.rc_autostart()",
                    ],
                    stdin=subprocess.DEVNULL,
                )
                break
        return True

    def cmd_stop(self, args: list[str]) -> None:
        _, args = self.parse_opts(
            "stop",
            args,
            {"-f": "f", "--force": "f", "-v": "v", "--verbose": "v", "-x": "x", "--debug": "x"},
            bundle="fvx",
        )
        if len(args) != 1:
            self.usage("stop")
        self.root_check()
        self.for_each(self.set_target(args[0], reverse=True), self.stop_one)

    def stop_one(self, jail: str) -> None:
        jd = self.jailsdir()
        for other in sorted(os.listdir(jd), key=natural_key):
            f = f"{jd}/{other}/settings.conf"
            text = Path(f).read_text() if os.path.isfile(f) else ""
            if os.path.isdir(f"{jd}/{other}") and not re.search(r"\bdepend=", text):
                self.sysrc_file(f, "depend=")
            if other != jail and regex_search(rf"(?<![A-Za-z0-9_]){re.escape(jail)}(?![A-Za-z0-9_])", text):
                self.nested(["stop", other])
        info = self.is_running(jail)
        if not info:
            self.info(1, f"\n[{jail}]:")
            self.error_continue("Jail is already stopped.")
        self.info(1, f"\n[{jail}]:")
        rctl_conf = self.L.jail_dir(jail) / "rctl.conf"  # stop.sh: "Remove rctl limits"
        if rctl_conf.is_file() and rctl_conf.stat().st_size:
            self.nested(["limits", jail, "clear"])
        if self.fault("stop", None, jail):
            self.err(f"jail: {jail}: exec.stop: emulated failure (BASTILLE_EMU_FAIL=stop)\n")
            return
        S.stop_sandbox(self.L, jail, info)
        self.out(f"{jail}: removed\n")

    def cmd_restart(self, args: list[str]) -> None:
        opts, args = self.parse_opts(
            "restart",
            args,
            {
                "-b": "b",
                "--boot": "b",
                "-i": "i",
                "--ignore": "i",
                "-v": "v",
                "--verbose": "v",
                "-x": "x",
                "--debug": "x",
            },
            {"-d": "d", "--delay": "d"},
            bundle="bivx",
        )
        if len(args) != 1:
            self.usage("restart")
        self.root_check()
        start_opts = (["-b"] if "b" in opts else []) + (["-d", opts["d"][-1]] if "d" in opts else [])

        def one(jail: str) -> None:
            if "i" not in opts:
                self.nested(["stop", jail])
                self.nested(["start", *start_opts, jail])
            elif not self.is_running(jail):
                # 1.4.4: with -i a *running* jail is not restarted either (faithful)
                self.info(1, f"\n[{jail}]:")
                self.error_continue("Jail is stopped.")

        self.for_each(self.set_target(args[0]), one)

    # ==================================================================== destroy (ref §2.4)
    def cmd_destroy(self, args: list[str]) -> None:
        opts, args = self.parse_opts(
            "destroy",
            args,
            {
                "-a": "a",
                "--auto": "a",
                "-c": "c",
                "--no-cache": "c",
                "-f": "f",
                "--force": "f",
                "-y": "y",
                "--yes": "y",
                "-x": "x",
                "--debug": "x",
            },
            bundle="acfyx",
        )
        if len(args) != 1:
            self.usage("destroy")
        target = args[0]
        self.root_check()
        release_pats = {
            "*-CURRENT": r"^([1-9]{2,2})\.[0-9](-CURRENT|-CURRENT-i386)$",
            "*-current": r"^([1-9]{2,2})\.[0-9](-CURRENT|-CURRENT-i386)$",
            "*-RELEASE": r"^([0-9]{1,2})\.[0-9](-RELEASE|-RELEASE-i386|-RC[1-9]|-BETA[1-9])$",
            "*-release": r"^([0-9]{1,2})\.[0-9](-RELEASE|-RELEASE-i386|-RC[1-9]|-BETA[1-9])$",
            "*-RELEASE-i386": r"^([0-9]{1,2})\.[0-9](-RELEASE|-RELEASE-i386|-RC[1-9]|-BETA[1-9])$",
            "*-RC[1-9]": r"^([0-9]{1,2})\.[0-9](-RELEASE|-RELEASE-i386|-RC[1-9]|-BETA[1-9])$",
            "*-rc[1-9]": r"^([0-9]{1,2})\.[0-9](-RELEASE|-RELEASE-i386|-RC[1-9]|-BETA[1-9])$",
            "*-BETA[1-9]": r"^([0-9]{1,2})\.[0-9](-RELEASE|-RELEASE-i386|-RC[1-9]|-BETA[1-9])$",
        }
        for pat, rx in release_pats.items():
            if fnmatch.fnmatchcase(target, pat):
                m = re.search(rx, target, re.I)
                self.destroy_release(m.group(0).upper().replace("I", "i") if m else "", opts)
                return
        if fnmatch.fnmatchcase(target, "[2-4].[0-9]*") or target in ("Debian10", "Debian11", "Debian12"):
            self.destroy_release(target, opts)
            return
        if os.path.isdir(f"{self.L.releasesdir}/{target}"):
            self.destroy_release(target, opts)
            return
        jails = self.set_target(target, reverse=True)
        self.for_each(jails, lambda j: self.destroy_jail(j, opts))

    def destroy_jail(self, jail: str, opts: dict[str, list[str]]) -> None:
        base = self.L.jail_dir(jail)
        if self.is_running(jail):
            if "a" in opts:
                self.nested(["stop", jail])
            else:
                self.info(1, f"\n[{jail}]:")
                self.error_notify("Jail is running.")
                self.error_continue("Use [-a|--auto] to auto-stop the jail.")
        self.info(1, f"\n[{jail}]:")
        if "y" not in opts:
            self.warn(1, f"\nAttempting to destroy jail: {jail}\n")
            if sys.stdin.isatty():
                self.err("Are you sure you want to continue? [y|n]:")
            answer = sys.stdin.readline().strip() if not sys.stdin.closed else ""
            if re.fullmatch(r"[Yy]|[Yy][Ee][Ss]", answer):
                pass
            elif re.fullmatch(r"[Nn]|[Nn][Oo]", answer):
                self.error_exit("[ERROR]: Cancelled by user.")
            else:
                self.error_exit("[ERROR]: Invalid input. Please answer 'y' or 'n'.")
        if base.is_dir():
            if self.fault("destroy", "mounted", jail):
                mounts = [e[1] for e in S.parse_fstab(base / "fstab")] or [f"{base}/root/.bastille"]
                self.error_notify(f"[ERROR]: Failed to destroy jail: {jail}")
                self.error_continue("Jail has mounted filesystems:\n" + "\n".join(mounts))
            self.info(2, "Destroying jail...")
            if self.fault("destroy", "busy", jail):
                # ref §2.4 / issue #1666: busy dataset -> message, exit 0, nothing removed
                self.error_continue("[ERROR]: Jail dataset(s) appears to be busy, exiting.")
            S.stop_sandbox(self.L, jail, None)
            shutil.rmtree(base, ignore_errors=True)
            log = f"{self.L.logsdir}/{jail}_console.log"
            if os.path.isfile(log):
                day = datetime.date.today().isoformat()
                os.replace(log, f"{log}-{day}")
                self.info(2, "Note: jail console logs archived.")
                self.info(2, f"{log}-{day}")

    def destroy_release(self, release: str, opts: dict[str, list[str]]) -> None:
        if not release:
            self.usage("destroy")
        self.info(1, f"\nAttempting to destroy release: {release}")
        rel = f"{self.L.releasesdir}/{release}"
        has_child = False
        jd = self.jailsdir()
        for jail in sorted(os.listdir(jd), key=natural_key) if os.path.isdir(jd) else []:
            with contextlib.suppress(OSError):
                if regex_search(
                    rf"(?<![A-Za-z0-9_]){re.escape(release)}(?![A-Za-z0-9_])", Path(f"{jd}/{jail}/fstab").read_text()
                ):
                    self.error_notify(f"[ERROR]: ({jail}) depends on {release} base.")
                    has_child = True
        if not os.path.isdir(rel):
            self.error_exit("[ERROR]: Release base not found.")
        if has_child:
            self.error_notify("[ERROR]: Cannot destroy base with child containers.")
            return
        self.info(2, "Deleting release base...")
        shutil.rmtree(rel, ignore_errors=True)
        if "c" not in opts:
            shutil.rmtree(f"{self.L.cachedir}/{release}", ignore_errors=True)

    # ==================================================================== list (ref §2.5)
    def cmd_list(self, args: list[str]) -> None:
        opts: dict[str, str] = {"json": "", "pretty": "", "state": "all"}
        while args and args[0].startswith("-"):
            a = args[0]
            if a in ("-h", "--help"):
                self.usage("list")
            elif a in ("-d", "--down"):
                opts["state"] = "Down"
            elif a in ("-j", "--json"):
                opts["json"] = "1"
            elif a in ("-p", "--pretty"):
                opts["pretty"] = opts["json"] = "1"
            elif a in ("-u", "--up"):
                opts["state"] = "Up"
            elif a in ("-x", "--debug"):
                pass
            else:
                for ch in a.replace("-", ""):
                    if ch == "a":
                        self.error_exit('[ERROR]: "-a" is deprecated. Use "all" instead.')
                    elif ch == "d":
                        opts["state"] = "Down"
                    elif ch == "j":
                        opts["json"] = "1"
                    elif ch == "p":
                        opts["pretty"] = "1"
                    elif ch == "u":
                        opts["state"] = "Up"
                    elif ch != "x":
                        self.error_exit(f'[ERROR]: Unknown Option: "{a}"')
            args = args[1:]
        if args and args[0] == "help":
            self.usage("list")
        self.root_check()
        targets: list[str] | None = None
        if not args:
            self.list_table("main", None, opts)
            return
        if len(args) == 2:
            targets = self.set_target(args[0])
            args = args[1:]
        if len(args) != 1:
            return
        sub = args[0]
        kinds = {
            "all": "all",
            "-a": "all",
            "--all": "all",
            "ip": "ip",
            "ips": "ip",
            "path": "path",
            "paths": "path",
            "rdr": "port",
            "port": "port",
            "ports": "port",
            "state": "state",
            "status": "state",
            "type": "type",
            "jailtype": "type",
        }
        if sub in kinds:
            self.list_table(kinds[sub], targets, opts)
        elif sub in ("release", "releases"):
            rd = self.L.releasesdir
            for r in sorted(os.listdir(rd), key=natural_key) if os.path.isdir(rd) else []:
                if os.path.isfile(f"{rd}/{r}/COPYRIGHT") or os.path.isdir(f"{rd}/{r}/debootstrap"):
                    self.info(3, S.userland_version(Path(f"{rd}/{r}/bin/freebsd-version")) or r)
        elif sub in ("template", "templates"):
            td = self.L.templatesdir
            found = []
            for d in sorted(os.listdir(td)) if os.path.isdir(td) else []:
                for t in sorted(os.listdir(f"{td}/{d}")) if os.path.isdir(f"{td}/{d}") else []:
                    if os.path.isdir(f"{td}/{d}/{t}"):
                        found.append(f"{d}/{t}")
            self.out("".join(f + "\n" for f in found))
        elif sub in ("jail", "jails", "container", "containers"):
            for j in self.list_jails():
                self.info(3, j)  # ref §2.5: one bare name per line, the stable machine-readable form
        elif sub in ("log", "logs"):
            ld = self.L.logsdir
            for f in sorted(os.listdir(ld)) if os.path.isdir(ld) else []:
                if os.path.isfile(f"{ld}/{f}"):
                    self.out(f"{ld}/{f}\n")
        elif sub in ("import", "imports", "export", "exports", "backup", "backups"):
            bd = self.L.backupsdir
            for f in sorted(os.listdir(bd), key=natural_key) if os.path.isdir(bd) else []:
                if not f.endswith(".sha256"):
                    self.out(f + "\n")
        elif sub in ("snap", "snapshot", "snapshots", "limit", "limits"):
            pass  # ZFS / rctl: nothing to list on the emulator
        else:
            resolved = self.set_target(sub)
            if len(resolved) == 1 and os.path.isfile(f"{self.jailsdir()}/{resolved[0]}/jail.conf"):
                self.list_table("main", resolved, {**opts, "pretty": ""})
            else:
                self.usage("list")

    def jail_info(self, jail: str, json_mode: bool) -> dict[str, str] | None:
        """list.sh get_jail_info."""
        jd = self.jailsdir()
        conf_path = Path(f"{jd}/{jail}/jail.conf")
        text = conf_path.read_text() if conf_path.is_file() else ""
        m = re.search(r"^(.*) \{$", text, re.M)
        name = m.group(1).split()[0] if m else ""
        info = self.is_running(name) if name else None
        tags = ""
        with contextlib.suppress(OSError):
            tags = ",".join(Path(f"{jd}/{name}/tags").read_text().splitlines())
        settings = self.settings(name)
        fstab = ""
        with contextlib.suppress(OSError):
            fstab = Path(f"{jd}/{name}/fstab").read_text()
        thin_line = re.search(r"^(.*)/releases/.*/root/\.bastille.*nullfs", fstab, re.M)
        is_fbsd = (
            os.path.isfile(f"{jd}/{name}/root/bin/freebsd-version")
            or os.path.isfile(f"{jd}/{name}/root/.bastille/bin/freebsd-version")
            or thin_line is not None
        )
        if regex_search(rf"(^|\s){re.escape(f'{jd}/{name}/root/.bastille')}(\s|$)", fstab, re.M):
            jtype = "thin"
        else:
            jtype = "thick"
        params = S.jail_params(conf_path)
        vnet = "vnet" in params
        rc_conf = ""
        with contextlib.suppress(OSError):
            rc_conf = Path(f"{jd}/{name}/root/etc/rc.conf").read_text()

        def vnet_ips() -> list[str]:
            ip4 = re.findall(r"^ifconfig_vnet.*inet ([0-9.]+)", rc_conf, re.M)
            ip6 = re.findall(
                r"^ifconfig_vnet.*inet6.*?((?:::)?[0-9a-fA-F]{1,4}(?:::?[0-9a-fA-F]{1,4}){1,7}(?:::)?)", rc_conf, re.M
            )
            return ip4 + ip6

        def conf_ips() -> list[str]:
            out = []
            for key in ("ip4.addr", "ip6.addr"):
                for line in re.findall(rf"^[ ].*{re.escape(key)}[ ].*=[ ](.*);$", text, re.M):
                    out.append(re.sub(r".*\|", "", re.sub(r"/.*", "", line)))
            return out

        if info:
            state = "Up"
            if vnet:
                ips = vnet_ips()
            else:
                ips = []
                for key in ("ip4.addr", "ip6.addr"):
                    ips += [x.split("|")[-1].split("/")[0] for x in (info["params"].get(key) or "").split(",") if x]
            path = info["path"]
            hostname = str(info["hostname"])
            ports = ""
            table = S.MountTable.from_json(info["table"])
            release = S.userland_version(Path(table.host_of(table.resolve("/bin/freebsd-version")) or "/nonexistent"))
        else:
            stanza = re.findall(rf"^{re.escape(name)} \{{$|^\}}$", text, re.M)
            state = "Down" if "".join(stanza) == f"{name} {{}}" else "n/a"
            ips = vnet_ips() if vnet else conf_ips()
            path = str(params.get("path") or "")
            hostname = str(params.get("host.hostname") or "")
            ports = ""
            with contextlib.suppress(OSError):
                rdr = Path(f"{jd}/{name}/rdr.conf").read_text().split()
                ports = "".join(
                    f"{w}/{rdr[i + 1]}:{rdr[i + 2]} "
                    for i, w in enumerate(rdr)
                    if w in ("tcp", "udp") and i + 2 < len(rdr)
                )
            release = ""
            if path and is_fbsd:
                if os.path.isfile(f"{path}/bin/freebsd-version"):
                    release = S.userland_version(Path(f"{path}/bin/freebsd-version"))
                elif thin_line:
                    release = S.userland_version(Path(fstab.split()[0]) / "bin" / "freebsd-version")
        if self._list_state != "all" and state != self._list_state:
            return None
        ips = [x for x in ips if x and x != "-"]
        return {
            "jid": str(info["jid"]) if info else "",
            "name": name,
            "boot": settings.get("boot", ""),
            "prio": settings.get("priority", ""),
            "state": state,
            "type": jtype,
            "ips": "\n".join(ips) if not json_mode else ",".join(ips),
            "ip_full": ",".join(ips),
            "ports": ports,
            "hostname": hostname,
            "release": release,
            "path": path,
            "tags": tags,
        }

    def list_table(self, kind: str, targets: list[str] | None, opts: dict[str, str]) -> None:
        jd = self.jailsdir()
        if not os.path.isdir(jd):
            self.error_exit("[ERROR]: No jails found.")
        self._list_state = opts["state"]
        json_mode = bool(opts["json"])
        confs = [Path(f"{jd}/{j}/jail.conf") for j in sorted(os.listdir(jd)) if os.path.isfile(f"{jd}/{j}/jail.conf")]
        texts = [c.read_text() for c in confs]
        names = [m.group(1).split()[0] for t in texts if (m := re.search(r"^(.*) \{$", t, re.M))]
        w_name = max([len(n) for n in names], default=10)
        w_name = max(w_name, 3)
        ip_lens = []
        for t in texts:
            for v in re.findall(r"^[ ].*ip[4,6].addr[ ].*=[ ](.*);$", t, re.M):
                ip_lens.append(len(re.sub(r".*\|", "", v.replace("/", " ")).split()[0]))
        for j in os.listdir(jd):  # VNET jails: addresses from rc.conf ifconfig_vnet*
            with contextlib.suppress(OSError):
                if "vnet;" in Path(f"{jd}/{j}/jail.conf").read_text():
                    rc = Path(f"{jd}/{j}/root/etc/rc.conf").read_text()
                    ip_lens += [len(x) for x in re.findall(r"^ifconfig_vnet.*inet ([0-9.]+)", rc, re.M)]
        w_ip = max([*ip_lens, 10])
        host_lens = [len(v) for t in texts for v in re.findall(r"^[ ]*host\.hostname[ ]*=[ ]*(.*);", t, re.M)]
        w_host = max([*host_lens, 8])
        w_ports = 15
        rel_lens = []
        for j in os.listdir(jd):
            with contextlib.suppress(OSError):
                for line in Path(f"{jd}/{j}/fstab").read_text().splitlines():
                    if re.search(r"/releases/.*/root/\.bastille.*nullfs", line):
                        rel_lens.append(len(S.userland_version(Path(line.split()[0]) / "bin" / "freebsd-version")))
            rel_lens.append(len(S.userland_version(Path(f"{jd}/{j}/root/bin/freebsd-version"))))
        w_rel = max([*rel_lens, 7])
        sp, w_jid, w_type = 2, 3, 5

        def pad(n: int) -> str:
            return " " * max(n, 0)

        lines: list[str] = []
        if kind == "main":
            lines.append(
                f" JID{pad(w_jid + sp - 3)}Name{pad(w_name + sp - 4)}Boot{pad(sp)}Prio{pad(sp)}State{pad(sp)}"
                f"Type{pad(w_type + sp - 4)}IP Address{pad(w_ip + sp - 10)}Published Ports{pad(w_ports + sp - 15)}"
                f"Release{pad(w_rel + sp - 7)}Tags"
            )
        elif kind == "all":
            lines.append(
                f" JID{pad(w_jid + sp - 3)}Boot{pad(sp)}Prio{pad(sp)}State{pad(sp)}IP Address{pad(w_ip + sp - 10)}"
                f"Published Ports{pad(w_ports + sp - 15)}Hostname{pad(w_host + sp - 8)}Release{pad(w_rel + sp - 7)}Path"
            )
        else:
            title = {"ip": "IP Address", "path": "Path", "port": "Published Ports", "state": "State", "type": "Type"}[
                kind
            ]
            lines.append(f" JID{pad(w_jid + sp - 3)}Name{pad(w_name + sp - 4)}{title}")
        jail_list = targets if targets is not None else sorted(os.listdir(jd), key=natural_key)
        for jail in jail_list:
            if not os.path.isfile(f"{jd}/{jail}/jail.conf"):
                continue
            i = self.jail_info(jail, json_mode)
            if i is None:
                continue
            ports_full = i["ports"]
            if len(i["ports"]) > w_ports:
                i["ports"] = i["ports"][: w_ports - 3] + "..."
            d = {k: (v or "-") for k, v in i.items()}
            ips = d["ips"].split("\n")
            first = ips[0]
            if kind == "main":
                lines.append(
                    f" {d['jid']}{pad(w_jid - len(d['jid']) + sp)}{d['name']}{pad(w_name - len(d['name']) + sp)}"
                    f"{d['boot']}{pad(4 - len(d['boot']) + sp)}{d['prio']}{pad(4 - len(d['prio']) + sp)}"
                    f"{d['state']}{pad(5 - len(d['state']) + sp)}{d['type']}{pad(w_type - len(d['type']) + sp)}"
                    f"{first}{pad(w_ip - len(first) + sp)}{d['ports']}{pad(w_ports - len(d['ports']) + sp)}"
                    f"{d['release']}{pad(w_rel - len(d['release']) + sp)}{d['tags']}"
                )
                for extra in ips[1:]:
                    lines.append(
                        pad(w_jid + sp)
                        + pad(w_name + sp)
                        + pad(4 + sp)
                        + pad(4 + sp)
                        + pad(5 + sp)
                        + pad(w_type + sp)
                        + " "
                        + extra
                    )
            elif kind == "all":
                lines.append(
                    f" {d['jid']}{pad(w_jid - len(d['jid']) + sp)}{d['boot']}{pad(4 - len(d['boot']) + sp)}"
                    f"{d['prio']}{pad(4 - len(d['prio']) + sp)}{d['state']}{pad(5 - len(d['state']) + sp)}"
                    f"{first}{pad(w_ip - len(first) + sp)}{d['ports']}{pad(w_ports - len(d['ports']) + sp)}"
                    f"{d['hostname']}{pad(w_host - len(d['hostname']) + sp)}{d['release']}"
                    f"{pad(w_rel - len(d['release']) + sp)}{d['path']}"
                )
                for extra in ips[1:]:
                    lines.append(pad(w_jid + sp) + pad(4 + sp) + pad(4 + sp) + pad(5 + sp) + " " + extra)
            else:
                val = {
                    "ip": i["ip_full"],
                    "path": i["path"],
                    "port": ports_full,
                    "state": i["state"],
                    "type": i["type"],
                }[kind]
                lines.append(
                    f" {d['jid']}{pad(w_jid - len(d['jid']) + sp)}{d['name']}"
                    f"{pad(w_name - len(d['name']) + sp)}{val or '-'}"
                )
        if not json_mode:
            self.out("".join(line + "\n" for line in lines))
            return
        # The JSON is awk splitting the table on whitespace (ref §2.5): spaces corrupt it.
        keys = {
            "main": [
                "JID",
                "Name",
                "Boot",
                "Prio",
                "State",
                "Type",
                "IP Address",
                "Published Ports",
                "Release",
                "Tags",
            ],
            "all": ["JID", "Boot", "Prio", "State", "IP Address", "Published Ports", "Hostname", "Release", "Path"],
            "ip": ["JID", "Name", "IP Address"],
            "path": ["JID", "Name", "Path"],
            "port": ["JID", "Name", "Published Ports"],
            "state": ["JID", "Name", "State"],
            "type": ["JID", "Name", "Type"],
        }[kind]
        rows = []
        for line in lines[1:]:
            f = line.split()
            rows.append("  {" + ",".join(f'"{k}":"{f[n] if n < len(f) else ""}"' for n, k in enumerate(keys)) + "}")
        text = "[\n" + ",\n".join(rows) + "\n]\n"
        if opts["pretty"]:
            text = re.sub(r"(?m)^  \{", "  {\n    ", text)
            text = text.replace(',"', ',\n    "')
            text = re.sub(r"(?m)\}$", "\n  }", text)
            text = re.sub(r"(?m)\},$", "\n  },", text)
        self.out(text)

    _list_state = "all"

    # ==================================================================== cmd (ref §2.6)
    def cmd_cmd(self, args: list[str]) -> None:
        opts, args = self.parse_opts("cmd", args, {"-a": "a", "--auto": "a", "-x": "x", "--debug": "x"}, bundle="ax")
        if not args:
            self.usage("cmd")
        target, command = args[0], args[1:]
        self.root_check()
        self.run_in_jails(self.set_target(target), "a" in opts, lambda j, info: self.jexec(j, info, command))

    def jexec(self, jail: str, info: dict, argv: list[str], user: str = "root") -> int:
        if self.fault("cmd", None, jail):
            self.err(f"jexec: emulated failure (BASTILLE_EMU_FAIL=cmd) in {jail}\n")
            return 1
        return S.jexec(info, argv, user=user)

    def run_in_jails(self, jails: list[str], auto: bool, fn) -> None:  # type: ignore[no-untyped-def]
        """The shared loop of cmd/pkg/sysrc/service: not running -> message + continue (exit 0),
        any non-zero inner status -> `Command failed on N jails.` (exit 1); inner codes collapse."""
        errors = 0
        for jail in jails:
            try:
                self.require_running(jail, auto)
                info = self.is_running(jail)
                self.info(1, f"\n[{jail}]:")
                if info is None:
                    rc = 1
                    self.err(f'jexec: jail "{jail}" not found\n')
                else:
                    rc = fn(jail, info)
                if rc != 0:
                    errors += 1
            except Continue:
                continue
        if errors:
            self.error_exit(f"[ERROR]: Command failed on {errors} jails.")

    # ==================================================================== cp / jcp (ref §2.7)
    def cmd_cp(self, args: list[str]) -> None:
        opts, args = self.parse_opts("cp", args, {"-q": "q", "--quiet": "q", "-x": "x", "--debug": "x"}, bundle="qx")
        if len(args) != 3:
            self.usage("cp")
        target, host_path, jail_path = args
        self.root_check()
        errors = 0
        for jail in self.set_target(target):
            try:
                self.info(1, f"\n[{jail}]:")
                dst = re.sub("//", "/", " ".join(f"{self.jailsdir()}/{jail}/root/{jail_path}".split()))
                if not os.path.isdir(dst):
                    try:
                        os.makedirs(os.path.dirname(dst), exist_ok=True)
                    except OSError:
                        self.error_continue(f"[ERROR]: Failed to create directory: {os.path.dirname(dst)}")
                follow = host_path == self.conf.get("bastille_resolv_conf") and os.path.islink(host_path)
                if not host_cp(host_path, dst, verbose="q" not in opts, deref=follow):
                    errors += 1
                    self.error_continue(f"[ERROR]: CP failed: {host_path} -> {dst}")
            except Continue:
                continue
        if errors:
            self.error_exit(f"[ERROR]: Command failed on {errors} jails.")

    def cmd_jcp(self, args: list[str]) -> None:
        opts, args = self.parse_opts("jcp", args, {"-q": "q", "--quiet": "q", "-x": "x", "--debug": "x"}, bundle="qx")
        if len(args) != 4:
            self.usage("jcp")
        src_t, src_path, dst_t, dst_path = args
        self.root_check()
        src_jail = self.set_target_single(src_t)
        errors = 0
        for jail in self.set_target(dst_t):
            if jail == src_jail:
                continue
            try:
                self.info(1, f"\n[{jail}]:")
                s = re.sub("//", "/", f"{self.jailsdir()}/{src_jail}/root/{src_path}")
                d = re.sub("//", "/", f"{self.jailsdir()}/{jail}/root/{dst_path}")
                if not host_cp(s, d, verbose="q" not in opts):
                    errors += 1
                    self.error_continue(f"[ERROR]: JCP failed: {s} -> {d}")
            except Continue:
                continue
        if errors:
            self.error_exit(f"[ERROR]: Command failed on {errors} jails.")

    # ==================================================================== mount / umount (ref §2.8)
    def cmd_mount(self, args: list[str]) -> None:
        opts, args = self.parse_opts("mount", args, {"-a": "a", "--auto": "a", "-x": "x", "--debug": "x"}, bundle="ax")
        if len(args) < 3 or len(args) > 7:
            self.usage("mount")
        target, rest = args[0], args[1:]
        self.root_check()
        jails = self.set_target(target)
        line = " ".join(rest) + (" nullfs ro 0 0" if len(rest) == 2 else "")
        line = line.replace("\\ ", "\\040")
        f = line.split()
        f += [""] * (6 - len(f))
        hostpath_fstab, jailpath_fstab, fstype, perms = f[0], f[1], f[2], f[3]
        checks = f"{f[4]} {f[5]}".strip()
        hostpath, jailpath = hostpath_fstab.replace("\\040", " "), jailpath_fstab.replace("\\040", " ")
        if not all([hostpath, jailpath, fstype, perms, checks]):
            self.error_notify("FSTAB format not recognized.")
            self.warn(1, "Format: /host/path /jail/path nullfs ro 0 0")
            self.warn(1, f"Read: {line}")
        advanced = (hostpath, fstype) in (
            ("tmpfs", "tmpfs"),
            ("linprocfs", "linprocfs"),
            ("linsysfs", "linsysfs"),
            ("proc", "procfs"),
            ("fdesc", "fdescfs"),
        )
        if advanced:
            self.warn(1, f'\n[WARNING]: Detected advanced mount type: "{fstype}"')
        elif not os.path.exists(hostpath) and fstype == "nullfs":
            os.makedirs(hostpath, exist_ok=True)
        elif not os.path.exists(hostpath) or fstype != "nullfs":
            self.error_notify("[ERROR]: Invalid host path or incorrect mount type in FSTAB.")
            self.warn(1, "Format: /host/path /jail/path nullfs ro 0 0")
            self.warn(1, f"Read: {line}")
            raise Exit(1)
        if not re.search(r"(ro|rw|rq|sw|xx)(,.*)?$", perms):
            self.error_notify("Detected invalid mount permissions in FSTAB.")
            self.warn(1, "Format: /host/path /jail/path nullfs ro 0 0")
            self.warn(1, f"Read: {line}")
            raise Exit(1)
        if checks not in ("0 0", "1 0", "0 1", "1 1"):
            self.error_notify("Detected invalid fstab options in FSTAB.")
            self.warn(1, "Format: /host/path /jail/path nullfs ro 0 0")
            self.warn(1, f"Read: {line}")
            raise Exit(1)

        def one(jail: str) -> None:
            self.require_running(jail, "a" in opts)
            self.info(1, f"\n[{jail}]:")
            root = f"{self.jailsdir()}/{jail}/root"
            full_fstab = f"{root}/{jailpath_fstab}".replace("//", "/", 1)
            full = f"{root}/{jailpath}".replace("//", "/", 1)
            fstab = self.L.jail_dir(jail) / "fstab"
            existing = fstab.read_text() if fstab.exists() else ""
            if regex_search(rf"[ \t]{re.escape(full_fstab)}[ \t]", existing):
                self.warn(1, f"Mountpoint already present in {fstab}")
                self.out(
                    "".join(
                        x + "\n" for x in existing.splitlines() if regex_search(rf"[ \t]{re.escape(full_fstab)}", x)
                    )
                )
                return
            if (os.path.isdir(hostpath) or fstype == "zfs") and not os.path.isdir(full):
                if not safe_makedirs(root, full):
                    self.error_continue("Failed to create mount point.")
            elif os.path.isfile(hostpath):
                filename = os.path.basename(hostpath)
                if not regex_search(rf"(?<![A-Za-z0-9_]){re.escape(filename)}(?![A-Za-z0-9_])", full):
                    full_fstab = f"{root}/{jailpath_fstab}/{filename}".replace("//", "/", 1)
                    full = f"{root}/{jailpath}/{filename}".replace("//", "/", 1)
                if not safe_makedirs(root, os.path.dirname(full)):
                    self.error_continue("Failed to create mount point.")
                if os.path.isfile(full):
                    self.error_notify("Failed. File exists at mount point.")
                    self.warn(1, full)
                    return
                Path(full).touch()
            entry = f"{hostpath_fstab} {full_fstab} {fstype} {perms} {checks}"
            with fstab.open("a") as fh:
                fh.write(entry + "\n")
            info = self.is_running(jail)
            # mount.sh appends the line first, then `mount -F fstab -a || error_continue`: a failed
            # mount leaves the line and exits 0 (fault mount:live reproduces it).
            if info and (
                self.fault("mount", "live", jail) or not self.mount_live(jail, info, hostpath, full, fstype, perms)
            ):
                self.err(f"mount_nullfs: {full}: Operation not permitted\n")
                self.error_continue(f"Failed to mount volume: {full}")
            self.info(2, f"Added: {entry}")

        self.for_each(jails, one)

    def mount_live(self, jail: str, info: dict, src: str, full: str, fstype: str, perms: str) -> bool:
        """`mount -F fstab -a` for the new line: bind it into the running jail's mount namespace."""
        if fstype != "nullfs":
            return True  # advanced types are recorded only (they apply at the next start)
        root = str(self.L.jail_root(jail))
        table = S.MountTable.from_json(info["table"])
        canon = table.resolve(full[len(root) :] or "/")
        if not table.exists(canon) or not S.live_mount(info, src, canon, "ro" in perms.split(",")):
            return False
        table.add(canon, src)
        info["table"] = table.to_json()
        info.setdefault("nullfs", []).append([src, full, perms])
        S.update_table(self.L, jail, info)
        return True

    def cmd_umount(self, args: list[str]) -> None:
        opts, args = self.parse_opts("umount", args, {"-a": "a", "--auto": "a", "-x": "x", "--debug": "x"}, bundle="ax")
        if len(args) != 2:
            self.usage("umount")
        target, mount_path = args
        self.root_check()

        def one(jail: str) -> None:
            self.require_running(jail, "a" in opts)
            self.info(1, f"\n[{jail}]:")
            root = str(self.L.jail_root(jail))
            jailpath = f"{root}/{mount_path}".replace("//", "/", 1).replace("\\", "")
            jailpath_fstab = re.sub("//", "/", f"{root}/{mount_path}").replace(" ", "\\040")
            fstab = self.L.jail_dir(jail) / "fstab"
            lines = fstab.read_text().splitlines() if fstab.exists() else []
            in_fstab = [x for x in lines if re.search(rf"[ \t]{re.escape(jailpath_fstab)}[ \t]", x)]
            info = self.is_running(jail)
            table = S.MountTable.from_json(info["table"]) if info else S.MountTable()
            canon = table.resolve(jailpath[len(root) :] or "/")
            mounted = any(mp == canon for mp, _ in table.mounts)
            if not mounted and not in_fstab:
                self.error_continue("[ERROR]: The specified mount point does not exist.")
            if mounted and info:
                if not S.live_umount(info, canon):
                    self.error_continue(f"[ERROR]: Failed to unmount volume: {mount_path}")
                table.mounts = [m for m in table.mounts if m[0] != canon]
                info["table"] = table.to_json()
                info["nullfs"] = [m for m in info.get("nullfs", []) if m[1] != jailpath]
                S.update_table(self.L, jail, info)
            if in_fstab:
                fstab.write_text(
                    "".join(x + "\n" for x in lines if not re.search(rf" +{re.escape(jailpath_fstab)} +", x))
                )
            if os.path.isfile(jailpath) and not os.path.islink(jailpath):
                os.unlink(jailpath)
            self.info(2, f"Unmounted: {jailpath}")

        self.for_each(self.set_target(target), one)

    # ==================================================================== sysrc / service / pkg (ref §2.9)
    def cmd_sysrc(self, args: list[str]) -> None:
        opts, args = self.parse_opts("sysrc", args, {"-a": "a", "--auto": "a", "-x": "x", "--debug": "x"}, bundle="ax")
        if len(args) < 2:
            self.usage("sysrc")
        self.root_check()
        rest = args[1:]
        self.run_in_jails(
            self.set_target(args[0]), "a" in opts, lambda j, i: self.jexec(j, i, ["/usr/sbin/sysrc", *rest])
        )

    def cmd_service(self, args: list[str]) -> None:
        opts, args = self.parse_opts(
            "service", args, {"-a": "a", "--auto": "a", "-x": "x", "--debug": "x"}, bundle="ax"
        )
        if len(args) != 3:
            self.usage("service")
        self.root_check()
        rest = args[1:]
        self.run_in_jails(
            self.set_target(args[0]), "a" in opts, lambda j, i: self.jexec(j, i, ["/usr/sbin/service", *rest])
        )

    def cmd_pkg(self, args: list[str]) -> None:
        opts, args = self.parse_opts(
            "pkg",
            args,
            {"-a": "a", "--auto": "a", "-H": "H", "--host": "H", "-y": "y", "--yes": "y", "-x": "x", "--debug": "x"},
            bundle="aHyx",
        )
        if len(args) < 2:
            self.usage("pkg")
        self.root_check()
        rest = args[1:]

        def one(jail: str, info: dict) -> int:
            # What the in-jail pkg stand-in accepts: BASTILLE_EMU_PKG_AVAILABLE / BASTILLE_EMU_FAIL=pkg.
            policy = os.environ.get("BASTILLE_EMU_PKG_AVAILABLE", "*").replace(",", "\n").split()
            if self.fault("pkg", None, jail):
                policy.append("!fail")
            table = S.MountTable.from_json(info["table"])
            host = table.host_of(table.resolve("/var/db/pkg"))
            with contextlib.suppress(OSError):
                if host:
                    os.makedirs(host, exist_ok=True)
                    Path(host, ".emulated-policy").write_text("\n".join(policy) + "\n")
            if "y" in opts:
                return self.jexec(jail, info, ["env", "ASSUME_ALWAYS_YES=yes", "/usr/sbin/pkg", *rest])
            return self.jexec(jail, info, ["/usr/sbin/pkg", *rest])

        self.run_in_jails(self.set_target(args[0]), "a" in opts, one)

    # ==================================================================== tags (ref §2.12)
    def cmd_tags(self, args: list[str]) -> None:
        _, args = self.parse_opts("tags", args, {"-x": "x", "--debug": "x"}, bundle="x")
        if len(args) < 2 or len(args) > 3:
            self.usage("tags")
        target, action = args[0], args[1]
        tags = args[2] if len(args) > 2 else ""
        self.root_check()

        def one(jail: str) -> None:
            f = self.L.jail_dir(jail) / "tags"
            current = f.read_text().splitlines() if f.exists() else []
            if action == "add":
                self.info(1, f"\n[{jail}]:")
                f.write_text("".join(t + "\n" for t in sorted(set(current + tags.replace(",", " ").split()))))
                self.info(2, f"Tags added: {tags}")
            elif action.startswith("del"):
                self.info(1, f"\n[{jail}]:")
                if f.exists():
                    left = [t for t in current if t not in tags.replace(",", " ").split()]
                    if left:
                        f.write_text("".join(t + "\n" for t in left))
                    else:
                        f.unlink()
                self.info(2, f"Tags removed: {tags}")
            elif action == "list":
                if tags:
                    if "," in tags:
                        self.usage("tags")
                    if tags in current:
                        self.info(3, jail)
                elif current:
                    self.info(1, f"\n[{jail}]:")
                    self.info(2, "\n".join(current))
            else:
                self.usage("tags")

        self.for_each(self.set_target(target), one)

    # ==================================================================== config (ref §2.11)
    JAIL_PROPERTIES = frozenset(
        [
            "jid",
            "name",
            "path",
            "interface",
            "ip_hostname",
            "ip4.addr",
            "ip4.saddrsel",
            "ip4",
            "ip6.addr",
            "ip6.saddrsel",
            "ip6",
            "vnet",
            "vnet.interface",
            "novnet",
            "host.hostname",
            "host.domainname",
            "host.hostuuid",
            "host.hostid",
            "host",
            "securelevel",
            "devfs_ruleset",
            "children.max",
            "children.cur",
            "enforce_statfs",
            "persist",
            "cpuset.id",
            "parent",
            "nopersist",
            "osrelease",
            "osreldate",
            "meta",
            "env",
            "allow.set_hostname",
            "allow.sysvipc",
            "allow.raw_sockets",
            "allow.chflags",
            "allow.noset_hostname",
            "allow.nosysvipc",
            "allow.noraw_sockets",
            "allow.nochflags",
            "allow.mount",
            "allow.mount.devfs",
            "allow.quotas",
            "allow.read_msgbuf",
            "allow.nomount",
            "allow.nomount.devfs",
            "allow.noquotas",
            "allow.noread_msgbuf",
            "allow.socket_af",
            "allow.mlock",
            "allow.nfsd",
            "allow.reserved_ports",
            "allow.nosocket_af",
            "allow.nomlock",
            "allow.nonfsd",
            "allow.noreserved_ports",
            "allow.unprivileged_parent_tampering",
            "allow.unprivileged_proc_debug",
            "allow.nounprivileged_parent_tampering",
            "allow.nounprivileged_proc_debug",
            "allow.suser",
            "allow.extattr",
            "allow.adjtime",
            "allow.settime",
            "allow.routing",
            "allow.setaudit",
            "allow.nosuser",
            "allow.noextattr",
            "allow.noadjtime",
            "allow.nosettime",
            "allow.norouting",
            "allow.nosetaudit",
            "allow.mount.fdescfs",
            "allow.mount.fusefs",
            "allow.mount.nullfs",
            "allow.mount.procfs",
            "allow.mount.linprocfs",
            "allow.nomount.fdescfs",
            "allow.nomount.fusefs",
            "allow.nomount.nullfs",
            "allow.nomount.procfs",
            "allow.nomount.linprocfs",
            "allow.mount.linsysfs",
            "allow.mount.tmpfs",
            "allow.mount.zfs",
            "allow.vmm",
            "allow.nomount.linsysfs",
            "allow.nomount.tmpfs",
            "allow.nomount.zfs",
            "allow.novmm",
            "linux",
            "linux.osname",
            "linux.osrelease",
            "linux.oss_version",
            "sysvmsg",
            "sysvsem",
            "sysvshm",
            "zfs.mount_snapshot",
            "exec.prepare",
            "exec.prestart",
            "exec.created",
            "exec.start",
            "command",
            "exec.poststart",
            "exec.prestop",
            "exec.stop",
            "exec.poststop",
            "exec.release",
            "exec.clean",
            "exec.jail_user",
            "exec.system_jail_user",
            "exec.system_user",
            "exec.timeout",
            "exec.consolelog",
            "exec.fib",
            "stop.timeout",
            "zfs.dataset",
            "mount",
            "mount.fstab",
            "mount.devfs",
            "mount.fdescfs",
            "mount.procfs",
            "dying",
            "allow.dying",
        ]
    )

    def cmd_config(self, args: list[str]) -> None:
        while (args and args[0].startswith("-")) or (args and args[0] == "help"):
            if args[0] in ("-h", "--help", "help"):
                self.usage("config")
            if args[0] not in ("-x", "--debug"):
                self.error_notify(f'[ERROR]: Unknown Option: "{args[0]}"')
                self.usage("config")
            args = args[1:]
        if len(args) < 3 or len(args) > 4:
            self.usage("config")
        target, action, rest = args[0], args[1], args[2:]
        self.root_check()
        jails = self.set_target(target)
        if action in ("get", "remove"):
            if len(rest) != 1:
                self.error_exit("[ERROR]: Too many parameters for [get|remove] operation.")
        elif action not in ("add", "set"):
            self.error_exit("[ERROR]: Only (add|set), get and remove are supported.")
        action = "set" if action == "add" else action
        prop, value = rest[0], " ".join(rest[1:])
        bastille_prop = prop in ("boot", "depend", "depends", "prio", "priority")
        if not bastille_prop and prop not in self.JAIL_PROPERTIES:
            self.error_exit(f"[ERROR]: Unsupported property: {prop}")
        for jail in jails:
            settings = str(self.L.jail_dir(jail) / "settings.conf")
            if prop in ("priority", "prio"):
                if action == "set":
                    if not re.search(r"^[0-9]+$", value, re.M):
                        self.error_exit("Priority value must be a number.")
                    sysrc_main(["-f", settings, f"priority={value}"])
                elif action == "remove":
                    self.error_exit("[ERROR]: Cannot remove the 'priority' property.")
                else:
                    sysrc_main(["-f", settings, "-n", "priority"])
            elif prop == "boot":
                if action == "set":
                    if value not in ("on", "off"):
                        self.error_exit("Boot value must be 'on' or 'off'.")
                    sysrc_main(["-f", settings, f"boot={value}"])
                elif action == "remove":
                    self.error_exit("[ERROR]: Cannot remove the 'boot' property.")
                else:
                    sysrc_main(["-f", settings, "-n", "boot"])
            elif prop in ("depend", "depends"):
                if action == "get":
                    sysrc_main(["-f", settings, "-n", "depend"])
                    continue
                if not value:
                    verb = "Adding a jail to" if action == "set" else "Removing a jail from"
                    self.error_exit(f"[ERROR]: {verb} the 'depend' property requires a TARGET.")
                deps = self.set_target(value)
                self.info(1, f"\n[{jail}]:")
                sysrc_main(["-f", settings, f"depend{'+=' if action == 'set' else '-='}{' '.join(deps)}"])
            else:
                self.config_jail_conf(jail, action, prop, value)
        if action in ("set", "remove") and not bastille_prop:
            self.info(1, "A restart is required for the changes to be applied. See 'bastille restart'.")
        raise Exit(0)

    def config_jail_conf(self, jail: str, action: str, prop: str, value: str) -> None:
        path = self.L.jail_dir(jail) / "jail.conf"
        if not path.is_file():
            self.error_notify(f"jail.conf does not exist for jail: {jail}")
            return
        params = S.jail_params(path)
        if action == "get":
            if prop == "name":
                self.info(3, jail)
            elif prop not in params:
                self.warn(3, "not set")
            elif params[prop] is None:
                self.info(3, "enabled")
            else:
                self.info(3, str(params[prop]))
            return
        if action == "remove":
            if prop not in params:
                self.error_exit(f"[ERROR]: Value not present in jail.conf: {prop}")
            self.info(1, f"\n[{jail}]:")
            path.write_text("".join(x + "\n" for x in path.read_text().splitlines() if prop not in x))
            self.info(2, f"Property removed: {prop}")
            return
        if prop in ("ip4.addr", "ip6.addr") and "|" not in value:
            value = f"{(params.get(prop) or '').split('|')[0]}|{value}"
        if value:
            if not re.fullmatch(r"[A-Za-z0-9._/:| $!&%=(){}-]+", value):
                self.error_exit(f"[ERROR]: Value contains unsupported characters: {value}")
            line = f"  {prop} = '{value}';" if " " in value else f"  {prop} = {value};"
        else:
            line = f"  {prop};"
        out, found = [], False
        for x in path.read_text().splitlines():
            if not found and re.match(rf"^\s*{re.escape(prop)}\s*;?$", x.split("=")[0]):
                out.append(line)
                found = True
                continue
            if x.split("=")[0] == "}" and not found:
                out.append(line)
            out.append(x)
        path.write_text("".join(x + "\n" for x in out))

    # ==================================================================== limits (limits.sh)
    def rctl(self, flag: str, rule: str) -> int:
        """The host's ``rctl -a|-r RULE`` as limits.sh/start.sh run it: bin/rctl's messages, its status."""
        return subprocess.run([str(S.EMU_DIR / "bin" / "rctl"), flag, rule], check=False).returncode

    def cmd_limits(self, args: list[str]) -> None:
        """limits.sh of 1.4.4: the sysctl check comes before the root check and the target; add
        appends ``jail:J:RES:deny=VALUE/jail`` to rctl.conf and runs ``rctl -a``, whose status is
        the script's (the last command run); an existing rule is "updated" by a sed whose pattern
        has a stray space (``jail: J:``), so rctl.conf keeps the old value while the kernel gets
        the new one; a stopped jail without -a is skipped with exit 0."""
        opts, args = self.parse_opts(
            "limits", args, {"-a": "a", "--auto": "a", "-l": "l", "--log": "l", "-x": "x", "--debug": "x"},
            bundle="alx",
        )  # fmt: skip
        if len(args) < 2 or len(args) > 4:
            self.usage("limits")
        target, action = args[0], args[1]
        if action in ("add", "remove", "clear", "list", "show", "reset", "stats"):
            rest = args[2:]
        else:
            action, rest = "add", args[1:]
        if K.sysctl_value("kern.racct.enable") != "1":
            if K.sysctl_value("kern.racct.enable") is None:
                self.err("sysctl: unknown oid 'kern.racct.enable'\n")
            self.error_exit("[ERROR]: Racct not enabled. Append 'kern.racct.enable=1' to /boot/loader.conf and reboot")
        self.root_check()
        jails = self.set_target(target)
        status = 0
        for jail in jails:
            try:
                status = self.limits_one(jail, action, rest, "a" in opts, "l" in opts)
            except Continue:
                status = 0
        raise Exit(status)

    def limits_one(self, jail: str, action: str, rest: list[str], auto: bool, log: bool) -> int:
        if not self.is_running(jail):
            if auto:
                self.nested(["start", jail])
            else:
                self.info(1, f"\n[{jail}]:")
                self.error_notify("Jail is not running.")
                self.error_continue("Use [-a|--auto] to auto-start the jail.")
        self.info(1, f"\n[{jail}]:")
        conf = self.L.jail_dir(jail) / "rctl.conf"
        lines = conf.read_text().splitlines() if conf.is_file() else []
        option = rest[0] if rest else ""
        value = rest[1] if len(rest) > 1 else ""
        if action == "add":
            if option in ("cpu", "cpus", "cpuset"):
                self.err("bastille-emulator: cpuset limits are not emulated\n")
                return 1
            rule, rule_log = f"jail:{jail}:{option}:deny={value}/jail", f"jail:{jail}:{option}:log={value}/jail"
            if any(re.search(f"jail:{jail}:{option}:deny", ln) for ln in lines):
                pass  # sed -i '' -E "s/jail: ${jail}:…/…/": never matches, the file keeps its line
            else:
                with conf.open("a") as fh:
                    fh.write(rule + "\n" + (rule_log + "\n" if log else ""))
            if log:
                self.info(2, f"[LOGGING]: {option} {value}")
                return subprocess.run([str(S.EMU_DIR / "bin" / "rctl"), "-a", rule, rule_log], check=False).returncode
            self.info(2, f"{option} {value}")
            return self.rctl("-a", rule)
        if action == "remove":
            if option in ("cpu", "cpus", "cpuset"):
                self.err("bastille-emulator: cpuset limits are not emulated\n")
                return 1
            if lines and any(re.search(f"jail:{jail}:{option}:deny", ln) for ln in lines):
                deny = "\n".join(ln for ln in lines if re.search(f"jail:{jail}:{option}:deny", ln))
                logr = "\n".join(ln for ln in lines if re.search(f"jail:{jail}:{option}:log", ln))
                subprocess.run([str(S.EMU_DIR / "bin" / "rctl"), "-r", deny, logr], check=False,
                               stderr=subprocess.DEVNULL)  # fmt: skip
                kept = [ln for ln in lines if not re.search(f".*{jail}:{option}.*", ln)]
                conf.write_text("".join(ln + "\n" for ln in kept))
                return 0
            return 0  # an `if` with no branch taken
        if action in ("clear", "reset"):
            if lines:
                for ln in lines:
                    subprocess.run([str(S.EMU_DIR / "bin" / "rctl"), "-r", ln], check=False, stderr=subprocess.DEVNULL)
                self.info(2, "RCTL limits cleared.")
            if action == "clear":
                return 0
            if lines:
                conf.unlink()
                self.info(2, "rctl.conf removed.")
            else:
                self.error_continue("[ERROR]: rctl.conf not found.")
            self.error_continue("[ERROR]: cpuset.conf not found.")
        if action in ("list", "show"):
            if lines:
                self.info(2, "-------------")
                self.info(2, "[RCTL Limits]")
                if option == "active":
                    subprocess.run([str(S.EMU_DIR / "bin" / "rctl"), f"jail:{jail}"], check=False,
                                   stderr=subprocess.DEVNULL)  # fmt: skip
                else:
                    self.out("".join(ln + "\n" for ln in lines))
            return 0
        if action == "stats":
            if lines:
                subprocess.run([str(S.EMU_DIR / "bin" / "rctl"), "-hu", f"jail:{jail}"], check=False,
                               stderr=subprocess.DEVNULL)  # fmt: skip
            return 0
        return 0

    # ==================================================================== template (ref §2.10)
    def cmd_template(self, args: list[str]) -> None:
        opts, args = self.parse_opts(
            "template", args, {"-a": "a", "--auto": "a", "-x": "x", "--debug": "x"}, bundle="ax"
        )
        if len(args) < 2:
            self.usage("template")
        target, template = args[0], args[1]
        tpl_dir = f"{self.L.templatesdir}/{template}"
        self.root_check()
        if target == "convert":
            self.error_notify("bastille-emulator: 'template convert' is not emulated")
            raise Exit(1)
        jails = self.set_target(target)
        if re.match(r"^https?://[^/]*/[^/]*/[^/]*", template):
            self.error_exit(f"[ERROR]: Failed to bootstrap template: {template}")
        elif "/" in template:
            if not os.path.isdir(tpl_dir):
                if not os.path.isdir(template):
                    self.error_exit(f"[ERROR]: {template} not found.")
                tpl_dir = template
        else:
            self.error_exit("[ERROR]: Template name/URL not recognized.")
        arg_file = ""
        for i, a in enumerate(args):
            if a == "--arg-file" and i + 1 < len(args):
                arg_file = args[i + 1]
                break
        if arg_file and not os.path.isfile(arg_file):
            self.error_exit(f"[ERROR]: File not found: {arg_file}")
        for jail in jails:
            try:
                self.apply_template(jail, template, tpl_dir, args, arg_file, "a" in opts)
            except Continue:
                continue

    def apply_template(
        self, jail: str, template: str, tpl_dir: str, args: list[str], arg_file: str, auto: bool
    ) -> None:
        self.require_running(jail, auto)
        self.info(1, f"\n[{jail}]:")
        self.info(2, f"Applying template: {template}...")
        info = self.is_running(jail)
        jail_path = info["path"] if info else str(self.L.jail_root(jail))
        params = self.jail_conf(jail)

        def first_ip(key: str) -> str:
            v = (params.get(key) or "not set").replace(",", " ").split()
            v0 = v[0] if v else ""
            if v0 in ("not set", "disable", "not"):
                return ""
            return re.sub(r"/[0-9]+$", "", v0.split("|")[-1])

        ip4, ip6 = first_ip("ip4.addr"), first_ip("ip6.addr")
        repl: list[tuple[str, str]] = [("${JAIL_IP}", ip4), ("${JAIL_IP6}", ip6), ("${JAIL_NAME}", jail)]
        bfile = Path(tpl_dir) / "Bastillefile"
        if bfile.is_file() and bfile.stat().st_size > 0:
            joined = ""
            for raw in bfile.read_text().splitlines():
                joined += raw[:-1] if raw.endswith("\\") else raw + "\n"
            lines = [x for x in joined.splitlines() if x.strip() and not x.lstrip(" \t").startswith("#")]
            shell_vars = {
                **{k: v for k, v in self.conf.items()},
                "jail": jail,
                "TEMPLATE": template,
                "bastille_template": tpl_dir,
                "bastille_jail_path": jail_path,
                "jail_ip4": ip4,
                "jail_ip6": ip6,
                "ARG_FILE": arg_file,
            }
            for line in lines:
                cmd = line.split()[0].lower()
                fields = line.split(" ")
                fields[0] = ""
                hook_args = " ".join(fields).lstrip(" ")
                for pat, val in repl:
                    hook_args = hook_args.replace(pat, val)
                if self.fault("template", None, jail):
                    self.error_exit(f"[ERROR]: Failed to execute command: {cmd}")
                if cmd in ("arg+", "arg"):
                    arg_name = re.sub(r"=.*", "", hook_args, count=1, flags=re.S)
                    value = self.template_arg_value(hook_args, arg_name, args, arg_file, shell_vars)
                    if not value:
                        if cmd == "arg+":
                            self.error_exit(f"[ERROR]: No value provided for mandatory arg: {arg_name}")
                        self.warn(1, f"[WARNING]: No value provided for arg: {arg_name}")
                    else:
                        repl.append(("${" + arg_name + "}", value))
                    continue
                if cmd == "cmd":
                    hook_args = "sh -c '" + hook_args.replace("'", "'\\''") + "'"
                elif cmd in ("cp", "copy"):
                    cmd = "cp"
                    if not hook_args.startswith("/") and not hook_args.startswith('"/'):
                        hook_args = f"{tpl_dir}/{hook_args}"
                elif cmd in ("fstab", "mount"):
                    cmd = "mount"
                elif cmd == "include":
                    cmd = "template"
                elif cmd == "overlay":
                    cmd = "cp"
                    hook_args = f"{tpl_dir}/{hook_args} /"
                elif cmd == "pkg":
                    cmd, hook_args = "pkg -y", f"install {hook_args}"
                elif cmd == "hpkg":
                    cmd, hook_args = "pkg -Hy", f"install {hook_args}"
                elif cmd in ("tag", "tags"):
                    cmd, hook_args = "tags", "add " + ",".join(hook_args.split())
                elif cmd == "render":
                    self.render(jail_path, hook_args, repl)
                    continue
                elif cmd in ("lif", "lineinfile", "line_in_file"):
                    self.line_in_file(jail_path, hook_args, shell_vars)
                    continue
                shell_vars.update(cmd=cmd, args=hook_args)
                if self.eval_bastille(f"bastille {cmd} {jail} {hook_args}", shell_vars) != 0:
                    self.error_exit(f"[ERROR]: Failed to execute command: {cmd}")
        self.info(1, f"\nTemplate applied: {template}")

    def sh_eval(
        self, script: str, line: str, shell_vars: dict[str, str], capture: bool
    ) -> tuple[int, list[list[str]], str]:
        """Run `script` in the host /bin/sh with $1=line, as template.sh's own `eval` would.
        `bastille` inside it is a function recording its argv (dispatched afterwards, in order)."""
        import tempfile

        fd, calls_path = tempfile.mkstemp(prefix="bastille-emu-calls-")
        os.close(fd)
        env = {**os.environ, **shell_vars, "BASTILLE_EMU_CALLS": calls_path}
        prelude = 'bastille() { printf "%s\\0" "$#" "$@" >>"$BASTILLE_EMU_CALLS"; }\necho() { printf "%s\\n" "$*"; }\n'
        try:
            proc = subprocess.run(
                ["/bin/sh", "-c", prelude + script, "sh", line],
                env=env,
                stdout=subprocess.PIPE if capture else None,
                check=False,
            )
            raw = Path(calls_path).read_bytes()
        finally:
            os.unlink(calls_path)
        calls: list[list[str]] = []
        items = raw.split(b"\0")
        i = 0
        while i < len(items) and items[i]:
            n = int(items[i])
            calls.append([x.decode() for x in items[i + 1 : i + 1 + n]])
            i += 1 + n
        return proc.returncode, calls, (proc.stdout or b"").decode()

    def eval_bastille(self, line: str, shell_vars: dict[str, str]) -> int:
        # IFS=newline and `set -f` are in force during template.sh's loop (ref §8.10)
        rc, calls, _ = self.sh_eval('IFS="\n"\nset -f\neval "$1"', line, shell_vars, capture=False)
        for argv in calls:
            rc = self.nested(argv)
        return rc

    def template_arg_value(
        self, hook_args: str, arg_name: str, args: list[str], arg_file: str, shell_vars: dict[str, str]
    ) -> str:
        """get_arg_value: --arg on the command line, then --arg-file, then the default; each value
        goes through `eval echo` in the host shell (quotes stripped, $ expanded) - ref §2.10."""
        chosen = hook_args
        found = False
        for i, a in enumerate(args):
            if a == "--arg" and i + 1 < len(args) and re.sub(r"=.*", "", args[i + 1], count=1, flags=re.S) == arg_name:
                chosen, found = args[i + 1], True
                break
        if not found and arg_file:
            with contextlib.suppress(OSError):
                hits = [x for x in Path(arg_file).read_text().splitlines() if x.startswith(f"{arg_name}=")]
                if hits:
                    chosen = "\n".join(hits)
        _, _, out = self.sh_eval('eval echo "$1"', chosen, {**shell_vars, "arg": chosen}, capture=True)
        lines = [re.sub(r"[^=]+=?", "", x, count=1).replace('"', "") for x in out.splitlines()]
        return "\n".join(lines)

    def render(self, jail_path: str, rel: str, repl: list[tuple[str, str]]) -> None:
        path = f"{jail_path}/{rel}"

        def sub(p: str) -> None:
            with contextlib.suppress(OSError, UnicodeDecodeError):
                text = Path(p).read_text()
                for pat, val in repl:
                    text = text.replace(pat, val)
                Path(p).write_text(text)

        if os.path.isdir(path):
            self.info(2, f"Rendering Directory: {path}")
            for dirpath, dirnames, files in os.walk(path):
                dirnames[:] = [d for d in dirnames if d != ".git"]
                for f in files:
                    sub(os.path.join(dirpath, f))
        elif os.path.isfile(path):
            self.info(2, f"Rendering File: {path}")
            sub(path)
        else:
            self.warn(1, f"[WARNING]: Path not found for render: {rel}")

    def line_in_file(self, jail_path: str, hook_args: str, shell_vars: dict[str, str]) -> None:
        _, _, out = self.sh_eval('eval set -- "$1"; printf "%s\\0" "$1" "$2"', hook_args, shell_vars, capture=True)
        parts = out.split("\0")
        line, file_path = parts[0], parts[1] if len(parts) > 1 else ""
        target = f"{jail_path}/{file_path}"
        if os.path.isfile(target):
            if line not in Path(target).read_text().splitlines():
                with open(target, "a") as fh:
                    fh.write(line + "\n")
        else:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            Path(target).write_text(line + "\n")


# ============================================================================ helpers


def copy_a(src: Path, dst: Path, contents: bool = False) -> bool:
    """BSD `cp -a`: a file, a dir (to a new name), or with contents=True the dir's contents."""
    try:
        if src.is_dir() and not src.is_symlink():
            shutil.copytree(src, dst, symlinks=True, dirs_exist_ok=contents or dst.exists())
        else:
            shutil.copy2(src, dst, follow_symlinks=False)
        return True
    except OSError:
        return False


def host_cp(src: str, dst: str, verbose: bool, deref: bool = False) -> bool:
    """`cp -a[v][L] src dst` with BSD trailing-slash semantics (`dir/` copies the contents)."""
    if src.endswith("/") and os.path.isdir(src):
        src = src + "."
    argv = ["cp", "-a" + ("v" if verbose else "") + ("L" if deref else ""), src, dst]
    return subprocess.call(argv) == 0


def safe_makedirs(root: str, path: str) -> bool:
    """mkdir -p under a jail root, refusing to follow a symlink out of the jail onto the host
    (the real `mkdir -p` would, ref §8.9; the emulator will not touch the test machine's /)."""
    real_root = os.path.realpath(root)
    cur = root
    for part in os.path.relpath(path, root).split(os.sep):
        cur = os.path.join(cur, part)
        if not os.path.realpath(cur).startswith(real_root + os.sep) and os.path.realpath(cur) != real_root:
            sys.stderr.write(f"bastille-emulator: refusing to create {path}: it resolves outside {root}\n")
            return False
    try:
        os.makedirs(path, exist_ok=True)
        return True
    except OSError:
        return False


def make_release_root(rel: Path, name: str) -> None:
    """A minimal FreeBSD-looking release: the directories thin jails link to, and base files."""
    dirs = (
        "bin boot dev etc etc/defaults etc/rc.d lib libexec media mnt net proc rescue root sbin tmp "
        "usr/bin usr/include usr/lib usr/lib32 usr/libdata usr/libexec usr/obj usr/sbin usr/share "
        "usr/src usr/tests var var/db var/db/pkg var/log var/run var/tmp home"
    )
    for d in dirs.split():
        (rel / d).mkdir(parents=True, exist_ok=True)
    os.chmod(rel / "tmp", 0o1777)
    os.chmod(rel / "var" / "tmp", 0o1777)
    os.chmod(rel / "root", 0o700)
    files = {
        "COPYRIGHT": "Emulated FreeBSD release for the bastille emulator (no FreeBSD code).\n",
        "bin/freebsd-version": f'#!/bin/sh\nUSERLAND_VERSION="{name}"\necho "$USERLAND_VERSION"\n',
        ".cshrc": "# $FreeBSD$\n",
        ".profile": "# $FreeBSD$\n",
        "root/.cshrc": "# $FreeBSD$\n",
        "root/.profile": "# $FreeBSD$\n",
        "etc/passwd": (
            "root:*:0:0:Charlie &:/root:/bin/csh\n"
            "toor:*:0:0:Bourne-again Superuser:/root:\n"
            "daemon:*:1:1:Owner of many system processes:/root:/usr/sbin/nologin\n"
            "operator:*:2:5:System &:/:/usr/sbin/nologin\n"
            "bin:*:3:7:Binaries Commands and Source:/:/usr/sbin/nologin\n"
            "tty:*:4:65533:Tty Sandbox:/:/usr/sbin/nologin\n"
            "www:*:80:80:World Wide Web Owner:/nonexistent:/usr/sbin/nologin\n"
            "nobody:*:65534:65534:Unprivileged user:/nonexistent:/usr/sbin/nologin\n"
        ),
        "etc/master.passwd": (
            "root::0:0::0:0:Charlie &:/root:/bin/csh\n"
            "toor:*:0:0::0:0:Bourne-again Superuser:/root:\n"
            "daemon:*:1:1::0:0:Owner of many system processes:/root:/usr/sbin/nologin\n"
            "operator:*:2:5::0:0:System &:/:/usr/sbin/nologin\n"
            "bin:*:3:7::0:0:Binaries Commands and Source:/:/usr/sbin/nologin\n"
            "tty:*:4:65533::0:0:Tty Sandbox:/:/usr/sbin/nologin\n"
            "www:*:80:80::0:0:World Wide Web Owner:/nonexistent:/usr/sbin/nologin\n"
            "nobody:*:65534:65534::0:0:Unprivileged user:/nonexistent:/usr/sbin/nologin\n"
        ),
        "etc/group": (
            "wheel:*:0:root\ndaemon:*:1:\nkmem:*:2:\nsys:*:3:\ntty:*:4:\noperator:*:5:root\nbin:*:7:\n"
            "staff:*:20:\nwww:*:80:\nnogroup:*:65533:\nnobody:*:65534:\n"
        ),
        "etc/rc.conf": "",
        "etc/defaults/rc.conf": (
            'rc_conf_files="/etc/rc.conf /etc/rc.conf.local"\nsendmail_enable="NO"\nsshd_enable="NO"\n'
        ),
        "etc/crontab": (
            "SHELL=/bin/sh\nPATH=/etc:/bin:/sbin:/usr/bin:/usr/sbin\n1,31\t0-5\t*\t*\t*\troot\tadjkerntz -a\n"
        ),
        "etc/resolv.conf": "",
        "etc/hosts": "::1\t\t\tlocalhost localhost.my.domain\n127.0.0.1\t\tlocalhost localhost.my.domain\n",
        "etc/login.conf": "default:\\\n\t:path=/sbin /bin /usr/sbin /usr/bin /usr/local/sbin /usr/local/bin ~/bin:\n",
        "etc/shells": "/bin/sh\n/bin/csh\n/bin/tcsh\n",
    }
    # rc(8)'s library (the emulated one: jailbin/rc.subr) and pkg(7)'s repository config, whose
    # signature_type a local `pkg add ./pkg.pkg` bootstrap honours (usr.sbin/pkg/FreeBSD.conf.quarterly).
    files["etc/rc.subr"] = (Path(__file__).resolve().parent / "jailbin" / "rc.subr").read_text()
    files["etc/pkg/FreeBSD.conf"] = (
        'FreeBSD: {\n  url: "pkg+https://pkg.example.invalid/${ABI}/quarterly",\n  mirror_type: "srv",\n'
        '  signature_type: "fingerprints",\n  fingerprints: "/usr/share/keys/pkg",\n  enabled: yes\n}\n'
    )
    (rel / "etc" / "pkg").mkdir(parents=True, exist_ok=True)
    for rel_path, text in files.items():
        (rel / rel_path).write_text(text)
    os.chmod(rel / "bin" / "freebsd-version", 0o555)
    os.chmod(rel / "etc" / "master.passwd", 0o600)


def main() -> int:
    argv = sys.argv[1:]
    emu = Bastille()
    rc = emu.main(argv)
    if emu.layout is not None:
        emu.layout.log({"argv": argv, "rc": rc, "time": time.time(), "pid": os.getpid()})
    return rc
