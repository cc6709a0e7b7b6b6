"""Small Python stand-ins for the FreeBSD base tools that bastille runs inside a jail.

Copied into every running emulated jail's /usr/sbin (and /sbin) next to the shims ``pw``,
``sysrc``, ``service``, ``pkg`` and ``daemon``; the emulator also imports this module on the host
(``parse_sh_assignments`` for bastille.conf, ``sysrc_main`` for ``sysrc -f settings.conf``).
Only the options bastille and colibri use are implemented; see README.md. Stdlib only.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import signal
import subprocess
import sys
import time

# ---------------------------------------------------------------------------------------------
# sh assignments (bastille.conf, rc.conf, settings.conf are sourced sh files)
# ---------------------------------------------------------------------------------------------

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _expand(s: str, i: int, lookup: dict[str, str]) -> tuple[str, int]:
    """Expand a ``$name`` / ``${name}`` / ``${name:-word}`` starting at s[i] == '$'."""
    if i + 1 < len(s) and s[i + 1] == "{":
        end = s.find("}", i + 2)
        if end < 0:
            return "$", i + 1
        inner = s[i + 2 : end]
        m = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)(:?[-=+?])?(.*)$", inner, re.S)
        if not m:
            return "", end + 1
        val = lookup.get(m.group(1), "")
        op = m.group(2)
        if op in (":-", ":="):
            val = val or m.group(3)
        elif op in ("-", "="):
            val = lookup.get(m.group(1), m.group(3))
        elif op == ":+":
            val = m.group(3) if val else ""
        return val, end + 1
    m = _NAME.match(s, i + 1)
    if not m:
        return "$", i + 1
    return lookup.get(m.group(0), ""), m.end()


def sh_word(s: str, i: int, lookup: dict[str, str]) -> tuple[str, int]:
    """Parse one sh word from s[i:], with quote removal and parameter expansion."""
    out = []
    while i < len(s):
        c = s[i]
        if c in " \t\n;&|":
            break
        if c == "'":
            end = s.find("'", i + 1)
            end = len(s) if end < 0 else end
            out.append(s[i + 1 : end])
            i = end + 1
        elif c == '"':
            i += 1
            while i < len(s) and s[i] != '"':
                if s[i] == "\\" and i + 1 < len(s) and s[i + 1] in '$`"\\\n':
                    out.append(s[i + 1])
                    i += 2
                elif s[i] == "$":
                    val, i = _expand(s, i, lookup)
                    out.append(val)
                else:
                    out.append(s[i])
                    i += 1
            i += 1
        elif c == "\\" and i + 1 < len(s):
            out.append(s[i + 1])
            i += 2
        elif c == "$":
            val, i = _expand(s, i, lookup)
            out.append(val)
        else:
            out.append(c)
            i += 1
    return "".join(out), i


def parse_sh_assignments(text: str, env: dict[str, str] | None = None) -> dict[str, str]:
    """``name=value`` lines of a sourced sh file, in order, expanding ``${var}`` as sh would."""
    values: dict[str, str] = {}
    lookup = dict(env or {})
    for line in text.splitlines():
        m = re.match(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=", line)
        if not m:
            continue
        val, _ = sh_word(line, m.end(), lookup)
        values[m.group(1)] = val
        lookup[m.group(1)] = val
    return values


def sh_quote_dq(value: str) -> str:
    return re.sub(r'([\\"`$])', r"\\\1", value)


# ---------------------------------------------------------------------------------------------
# sysrc(8)
# ---------------------------------------------------------------------------------------------


def _getopts(argv: list[str], spec: str) -> tuple[dict[str, list[str]], list[str]]:
    """getopt(3)-style parsing: bundled flags, ``x:`` takes a value; stops at the first operand."""
    opts: dict[str, list[str]] = {}
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            i += 1
            break
        if not a.startswith("-") or a == "-":
            break
        j = 1
        while j < len(a):
            c = a[j]
            k = spec.find(c)
            if k < 0:
                raise ValueError(c)
            if k + 1 < len(spec) and spec[k + 1] == ":":
                val = a[j + 1 :] or (argv[i + 1] if i + 1 < len(argv) else "")
                if not a[j + 1 :]:
                    i += 1
                opts.setdefault(c, []).append(val)
                break
            opts.setdefault(c, []).append("")
            j += 1
        i += 1
    return opts, argv[i:]


def _rc_read(path: str) -> dict[str, str]:
    try:
        with open(path) as fh:
            return parse_sh_assignments(fh.read())
    except OSError:
        return {}


def _rc_write(path: str, name: str, value: str | None) -> None:
    try:
        with open(path) as fh:
            lines = fh.read().splitlines()
    except OSError:
        lines = []
    pat = re.compile(rf"^\s*{re.escape(name)}=")
    idx = [i for i, line in enumerate(lines) if pat.match(line)]
    if value is None:
        lines = [line for i, line in enumerate(lines) if i not in idx]
    elif idx:
        lines[idx[-1]] = f'{name}="{sh_quote_dq(value)}"'
    else:
        lines.append(f'{name}="{sh_quote_dq(value)}"')
    d = os.path.dirname(path)
    if d:
        os.makedirs(d, exist_ok=True)
    with open(path, "w") as fh:
        fh.write("\n".join(lines) + ("\n" if lines else ""))


def sysrc_main(argv: list[str], out=None, err=None) -> int:  # type: ignore[no-untyped-def]
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        opts, args = _getopts(argv, "acdDef:hiNnqR:vxAj:")
    except ValueError as exc:
        err.write(f"sysrc: illegal option -- {exc}\n")
        return 2
    if "j" in opts:
        err.write("sysrc: -j is not emulated\n")
        return 1
    root = (opts.get("R") or ["/"])[-1]

    def rooted(p: str) -> str:
        return os.path.join(root, p.lstrip("/")) if root != "/" else p

    if "f" in opts:
        files = [rooted(f) for v in opts["f"] for f in re.split(r"[\s,]+", v) if f]
        defaults: list[str] = []
    else:
        files = [rooted("/etc/rc.conf"), rooted("/etc/rc.conf.local")]
        defaults = [rooted("/etc/defaults/rc.conf")]
    quiet, only_val, only_name = "q" in opts, "n" in opts, "N" in opts
    status = 0
    if "a" in opts or "A" in opts:
        merged: dict[str, str] = {}
        for f in (defaults if "A" in opts else []) + files:
            merged.update(_rc_read(f))
        for k in sorted(merged):
            out.write(f"{k}: {merged[k]}\n" if not only_val else f"{merged[k]}\n")
        return 0
    for arg in args:
        m = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)(\+=|-=|=)?(.*)$", arg, re.S)
        if not m:
            err.write(f"sysrc: {arg}: invalid variable name\n")
            status = 1
            continue
        name, op, val = m.group(1), m.group(2), m.group(3)
        current: str | None = None
        holder = files[0]
        for f in defaults + files:
            vals = _rc_read(f)
            if name in vals:
                current = vals[name]
                if f in files:
                    holder = f
        if "x" in opts:
            found = False
            for f in files:
                if name in _rc_read(f):
                    _rc_write(f, name, None)
                    found = True
            status = status if found else 1
            continue
        if op is None:
            if current is None:
                if "i" not in opts:
                    err.write(f"sysrc: unknown variable '{name}'\n")
                    status = 1
                continue
            if "c" in opts:
                continue
            if only_name:
                out.write(f"{name}\n")
            elif only_val:
                out.write(f"{current}\n")
            elif "e" in opts:
                out.write(f'{name}="{current}"\n')
            else:
                out.write(f"{name}: {current}\n")
            continue
        old = current or ""
        words = old.split()
        if op == "+=":
            new = " ".join(words + [w for w in val.split() if w not in words])
        elif op == "-=":
            drop = val.split()
            new = " ".join(w for w in words if w not in drop)
        else:
            new = val
        if "c" in opts:
            status = status if new == old else 1
            continue
        _rc_write(holder, name, new)
        if not quiet:
            out.write(f"{name}: {old} -> {new}\n")
    return status


# ---------------------------------------------------------------------------------------------
# pw(8): the user/group subset a Bastillefile uses (useradd, usermod, groupadd, ...)
# ---------------------------------------------------------------------------------------------


class _PwError(Exception):
    def __init__(self, code: int, msg: str) -> None:
        super().__init__(msg)
        self.code = code


def _read_table(path: str) -> list[list[str]]:
    try:
        with open(path) as fh:
            return [line.split(":") for line in fh.read().splitlines() if line and not line.startswith("#")]
    except OSError:
        return []


def _write_table(path: str, rows: list[list[str]], header: str = "") -> None:
    with open(path, "w") as fh:
        fh.write(header + "".join(":".join(r) + "\n" for r in rows))


def pw_main(argv: list[str]) -> int:
    try:
        return _pw(argv)
    except _PwError as exc:
        sys.stderr.write(f"pw: {exc}\n")
        return exc.code


def _pw(argv: list[str]) -> int:
    etc = "/etc"
    while argv and argv[0] in ("-V", "-R"):
        etc = argv[1] if argv[0] == "-V" else os.path.join(argv[1], "etc")
        argv = argv[2:]
    if not argv:
        raise _PwError(64, "usage: pw [user|group|lock|unlock] [add|del|mod|show|next] [help|switches/values]")
    cmd = argv.pop(0)
    aliases = {"adduser": "useradd", "deluser": "userdel", "moduser": "usermod", "showuser": "usershow"}
    cmd = aliases.get(cmd, cmd)
    if cmd in ("user", "group") and argv:
        cmd = cmd + argv.pop(0)
    cmd = {"useradd": "useradd", "usermod": "usermod", "userdel": "userdel", "usershow": "usershow"}.get(cmd, cmd)
    name = None
    if argv and not argv[0].startswith("-"):
        name = argv.pop(0)
    opts, rest = _getopts(argv, "n:u:c:d:e:p:g:G:mM:k:s:oL:h:H:NPYqrl:w:C:a")
    if "n" in opts:
        name = opts["n"][-1]
    if name is None and rest:
        name = rest[0]
    master, passwd, group = f"{etc}/master.passwd", f"{etc}/passwd", f"{etc}/group"
    users = _read_table(master) or [
        [r[0], r[1], r[2], r[3], "", "0", "0", r[4], r[5], r[6]] for r in _read_table(passwd) if len(r) >= 7
    ]
    groups = _read_table(group)

    def save() -> None:
        _write_table(master, users)
        with contextlib.suppress(OSError):
            os.chmod(master, 0o600)
        _write_table(passwd, [[u[0], "*", u[2], u[3], u[7], u[8], u[9]] for u in users])
        _write_table(group, groups)

    def find_user(n: str | None) -> list[str] | None:
        return next((u for u in users if u[0] == n or (n is not None and n.isdigit() and u[2] == n)), None)

    def find_group(n: str) -> list[str] | None:
        return next((g for g in groups if g[0] == n or (n.isdigit() and g[2] == n)), None)

    def password(o: dict[str, list[str]]) -> str | None:
        if "h" in o or "H" in o:
            fd = (o.get("h") or o.get("H"))[-1]  # type: ignore[index]
            if fd == "-":
                return "*"
            secret = os.read(int(fd), 4096).decode().split("\n")[0]
            if "H" in o:
                return secret
            return "$6$emulated$" + hashlib.sha512(secret.encode()).hexdigest()[:86]
        return None

    if cmd == "useradd":
        if name is None:
            raise _PwError(64, "user name or id required")
        if find_user(name):
            raise _PwError(65, f"user '{name}' already exists")
        uid = opts["u"][-1] if "u" in opts else None
        if uid is None:
            used = {int(u[2]) for u in users if u[2].isdigit()}
            uid = str(next(i for i in range(1001, 65534) if i not in used))
        if "g" in opts:
            g = find_group(opts["g"][-1])
            if g is None:
                raise _PwError(67, f"group `{opts['g'][-1]}' does not exist")
            gid = g[2]
        else:
            g = find_group(name)
            if g is None:
                used_g = {int(x[2]) for x in groups if x[2].isdigit()}
                gid = uid if int(uid) not in used_g else str(next(i for i in range(1001, 65534) if i not in used_g))
                groups.append([name, "*", gid, ""])
            else:
                gid = g[2]
        home = opts["d"][-1] if "d" in opts else f"/home/{name}"
        shell = opts["s"][-1] if "s" in opts else "/bin/sh"
        if "/" not in shell:
            shell = f"/bin/{shell}"
        comment = opts["c"][-1] if "c" in opts else "User &"
        users.append([name, password(opts) or "*", uid, gid, opts.get("L", [""])[-1], "0", "0", comment, home, shell])
        for gname in ",".join(opts.get("G", [])).split(","):
            gr = find_group(gname) if gname else None
            if gname and gr is None:
                raise _PwError(67, f"group `{gname}' does not exist")
            if gr is not None:
                members = [m for m in gr[3].split(",") if m]
                gr[3] = ",".join([*members, name] if name not in members else members)
        save()
        if "m" in opts:
            _make_home(home, int(uid), int(gid), int((opts.get("M") or ["755"])[-1], 8))
        return 0
    if cmd in ("usermod", "lock", "unlock"):
        u = find_user(name)
        if u is None:
            raise _PwError(67, f"no such user `{name}'")
        if cmd == "lock":
            u[1] = u[1] if u[1].startswith("*LOCKED*") else "*LOCKED*" + u[1]
        elif cmd == "unlock":
            u[1] = u[1].removeprefix("*LOCKED*")
        for key, idx in (("u", 2), ("c", 7), ("d", 8), ("L", 4)):
            if key in opts:
                u[idx] = opts[key][-1]
        if "s" in opts:
            u[9] = opts["s"][-1] if "/" in opts["s"][-1] else f"/bin/{opts['s'][-1]}"
        if "g" in opts:
            g = find_group(opts["g"][-1])
            if g is None:
                raise _PwError(67, f"group `{opts['g'][-1]}' does not exist")
            u[3] = g[2]
        if "l" in opts:
            u[0] = opts["l"][-1]
        pwd = password(opts)
        if pwd is not None:
            u[1] = pwd
        if "G" in opts:
            for gr in groups:
                members = [m for m in gr[3].split(",") if m and m != u[0]]
                if gr[0] in ",".join(opts["G"]).split(","):
                    members.append(u[0])
                gr[3] = ",".join(members)
        save()
        if "m" in opts:
            _make_home(u[8], int(u[2]), int(u[3]), 0o755)
        return 0
    if cmd == "userdel":
        u = find_user(name)
        if u is None:
            raise _PwError(67, f"no such user `{name}'")
        users.remove(u)
        for gr in groups:
            gr[3] = ",".join(m for m in gr[3].split(",") if m and m != u[0])
        g = find_group(u[0])
        if g is not None and g[2] == u[3]:
            groups.remove(g)
        save()
        if "r" in opts and u[8].startswith("/home/"):
            subprocess.call(["rm", "-rf", u[8]])
        return 0
    if cmd == "usershow":
        u = find_user(name)
        if u is None:
            raise _PwError(67, f"no such user `{name}'")
        print(":".join(u))
        return 0
    if cmd in ("usernext", "groupnext"):
        rows = users if cmd == "usernext" else groups
        used = {int(r[2]) for r in rows if r[2].isdigit()}
        print(next(i for i in range(1001, 65534) if i not in used))
        return 0
    if cmd == "groupadd":
        if name is None:
            raise _PwError(64, "group name required")
        if find_group(name):
            raise _PwError(65, f"group name `{name}' already exists")
        used_g = {int(x[2]) for x in groups if x[2].isdigit()}
        gid = opts["g"][-1] if "g" in opts else str(next(i for i in range(1001, 65534) if i not in used_g))
        groups.append([name, "*", gid, ",".join(opts.get("M", []))])
        save()
        return 0
    if cmd in ("groupmod", "groupdel", "groupshow"):
        g = find_group(name or "")
        if g is None:
            raise _PwError(67, f"unknown group `{name}'")
        if cmd == "groupshow":
            print(":".join(g))
            return 0
        if cmd == "groupdel":
            groups.remove(g)
        else:
            members = [m for m in g[3].split(",") if m]
            if "M" in opts:
                members = [m for m in ",".join(opts["M"]).split(",") if m]
            for m in ",".join(opts.get("m", [])).split(","):
                if m and m not in members:
                    members.append(m)
            drop = ",".join(opts.get("d", [])).split(",")
            g[3] = ",".join(m for m in members if m not in drop)
            if "g" in opts:
                g[2] = opts["g"][-1]
            if "l" in opts:
                g[0] = opts["l"][-1]
        save()
        return 0
    raise _PwError(64, f"unknown command `{cmd}'")


def _make_home(home: str, uid: int, gid: int, mode: int) -> None:
    os.makedirs(home, exist_ok=True)
    os.chown(home, uid, gid)
    os.chmod(home, mode)


# ---------------------------------------------------------------------------------------------
# service(8) + rc.subr: bookkeeping for rc.subr scripts, real execution for plain sh scripts
# ---------------------------------------------------------------------------------------------

RC_DIRS = ["/etc/rc.d", "/usr/local/etc/rc.d"]
STATE_DIR = "/var/run/.emulated-rc"


def _rc_script_info(path: str) -> tuple[str, str, list[str]]:
    with open(path) as fh:
        text = fh.read()
    base = os.path.basename(path)
    m = re.search(r"^\s*name=[\"']?([A-Za-z0-9_]+)", text, re.M)
    name = m.group(1) if m else base
    m = re.search(r"^\s*rcvar=[\"']?([^\"'\s]+)", text, re.M)
    rcvar = (m.group(1) if m else "${name}_enable").replace("${name}", name).replace("$name", name)
    m = re.search(r"^\s*extra_commands=[\"']?([^\"'\n]*)", text, re.M)
    extra = m.group(1).split() if m else []
    return name, rcvar, extra


def _rc_enabled(rcvar: str) -> bool:
    vals: dict[str, str] = {}
    for f in ("/etc/defaults/rc.conf", "/etc/rc.conf", "/etc/rc.conf.local"):
        vals.update(_rc_read(f))
    return vals.get(rcvar, "").lower() in ("yes", "true", "on", "1")


def find_rc_script(svc: str) -> str | None:
    if "/" in svc:
        return svc if os.path.isfile(svc) else None
    for d in RC_DIRS:
        p = os.path.join(d, svc)
        if os.path.isfile(p):
            return p
    return None


def rc_autostart() -> list[str]:
    """What /etc/rc does at jail start in the emulator: 'start' every enabled rc.subr service."""
    started = []
    for d in RC_DIRS:
        with contextlib.suppress(OSError):
            for n in sorted(os.listdir(d)):
                p = os.path.join(d, n)
                if os.path.isfile(p) and service_main([n, "quietstart"]) == 0:
                    started.append(n)
    return started


def _read(path: str) -> str:
    with open(path) as fh:
        return fh.read()


def service_main(argv: list[str]) -> int:
    if not argv:
        sys.stderr.write("usage: service [-j <jail name or id>] [-rv] <rc.d script> start|stop|etc.\n")
        return 1
    if argv[0] == "-e":
        for d in RC_DIRS:
            with contextlib.suppress(OSError):
                for n in sorted(os.listdir(d)):
                    p = os.path.join(d, n)
                    if os.path.isfile(p) and _rc_enabled(_rc_script_info(p)[1]):
                        print(p)
        return 0
    if argv[0] == "-l":
        for d in RC_DIRS:
            with contextlib.suppress(OSError):
                for n in sorted(os.listdir(d)):
                    print(n)
        return 0
    if len(argv) < 2:
        sys.stderr.write("usage: service [-j <jail name or id>] [-rv] <rc.d script> start|stop|etc.\n")
        return 1
    svc, verb = argv[0], argv[1]
    script = find_rc_script(svc)
    if script is None:
        sys.stderr.write(
            f"{svc} does not exist in /etc/rc.d or the local startup\n"
            f"directories (/usr/local/etc/rc.d), or is not executable\n"
        )
        return 1
    uses_rc_subr = "rc.subr" in _read(script)
    if not uses_rc_subr:
        # A plain sh script works on Linux too: run it for real, as service(8) would.
        return subprocess.call(["/bin/sh", script, *argv[1:]])
    name, rcvar, extra = _rc_script_info(script)
    state = os.path.join(STATE_DIR, name)
    running = os.path.exists(state)
    prefix = ""
    for p in ("one", "force", "quiet", "fast"):
        if verb.startswith(p) and verb != p:
            prefix, verb = p, verb[len(p) :]
            break
    quiet = prefix in ("quiet", "fast")
    gated = verb in ("start", "restart", "status", "poll") and prefix not in ("one", "force")
    if gated and not _rc_enabled(rcvar):  # rc.subr run_rc_command: a notice on stdout, status 0
        if not quiet:
            print(f"Cannot '{verb}' {name}. Set {rcvar} to YES in /etc/rc.conf", end=" ")
            print(f"or use 'one{verb}' instead of '{verb}'.")
        return 0
    if verb == "start":
        if running:
            if not quiet:
                print(f"{name} already running? (pid={_read(state).strip()}).")
            return 0 if quiet else 1
        os.makedirs(STATE_DIR, exist_ok=True)
        with open(state, "w") as fh:
            fh.write(f"{1000 + int(hashlib.md5(name.encode()).hexdigest()[:4], 16) % 30000}\n")
        print(f"Starting {name}.")
        return 0
    if verb == "stop":
        if not running:
            sys.stderr.write(f"{name} not running? (check /var/run/{name}.pid).\n")
            return 1
        pid = _read(state).strip()
        os.unlink(state)
        print(f"Stopping {name}.\nWaiting for PIDS: {pid}.")
        return 0
    if verb == "restart":
        if running:
            service_main([svc, "onestop" if prefix == "one" else "forcestop"])
        return service_main([svc, "onestart" if prefix == "one" else "forcestart"])
    if verb == "status":
        if running:
            print(f"{name} is running as pid {_read(state).strip()}.")
            return 0
        print(f"{name} is not running.")
        return 1
    if verb in ("enable", "disable"):
        _rc_write("/etc/rc.conf", rcvar, "YES" if verb == "enable" else "NO")
        print(f"{name} {verb}d in /etc/rc.conf")
        return 0
    if verb == "enabled":
        return 0 if _rc_enabled(rcvar) else 1
    if verb == "rcvar":
        val = _rc_read("/etc/rc.conf").get(rcvar, "")
        print(f'# {name}\n#\n{rcvar}="{val or "NO"}"\n#   (default: "")')
        return 0
    if verb in extra:
        return 0
    cmds = "start|stop|restart|rcvar|enable|disable|delete|enabled|describe|extracommands|status|poll"
    extras = "".join(f"|{e}" for e in extra)
    sys.stderr.write(f"Usage: {script} [fast|force|one|quiet]({cmds}{extras})\n")
    return 1


# ---------------------------------------------------------------------------------------------
# pkg(8): recorded, not real. Installed names live in /var/db/pkg/.emulated-installed.
# ---------------------------------------------------------------------------------------------

PKG_DB = "/var/db/pkg/.emulated-installed"
PKG_POLICY = "/var/db/pkg/.emulated-policy"  # written by `bastille pkg` (BASTILLE_EMU_PKG_AVAILABLE/FAIL)


def _pkg_policy() -> tuple[set[str] | None, bool]:
    path = PKG_POLICY
    try:
        with open(path) as fh:
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


def _pkg_match(entry: tuple[str, str], pattern: str) -> bool:
    return pattern in (entry[0], f"{entry[0]}-{entry[1]}")


def pkg_main(argv: list[str]) -> int:
    try:
        opts, args = _getopts(argv, "NdlvyC:R:o:j:c:r:4:6:")
        if "N" in opts:
            return 0
        if not args:
            sys.stderr.write("Usage: pkg [-v] [-d] [-l] [-N] [-j <jail name or id>|-c <chroot path>|-r <rootdir>]\n")
            return 1
        cmd, rest = args[0], args[1:]
        sub_opts, names = _getopts(rest, "AfIMnFqRUyagiCxXeEr:")
    except ValueError as exc:
        sys.stderr.write(f"pkg: illegal option -- {exc}\n")
        return 1
    available, fail = _pkg_policy()
    installed: list[tuple[str, str]] = []
    with contextlib.suppress(OSError), open(PKG_DB) as fh:
        installed = [_pkg_split(x) for x in fh.read().split() if x]
    assume_yes = "y" in sub_opts or os.environ.get("ASSUME_ALWAYS_YES", "").lower() in ("yes", "true", "1")

    def save(entries: list[tuple[str, str]]) -> None:
        os.makedirs(os.path.dirname(PKG_DB), exist_ok=True)
        with open(PKG_DB, "w") as fh:
            fh.write("".join(f"{n}-{v}\n" for n, v in entries))

    def repo_banner() -> None:
        print("Updating FreeBSD repository catalogue...\nFreeBSD repository is up to date.")
        print("All repositories are up to date.")

    if cmd in ("update", "bootstrap"):
        if fail:
            sys.stderr.write("pkg: Repository FreeBSD cannot be opened. 'pkg update' required\n")
            return 1
        repo_banner()
        return 0
    if cmd == "add":
        for f in names:
            if not os.path.isfile(f):
                sys.stderr.write(f"pkg: Unable to access {f}: No such file or directory\n")
                return 1
            entry = _pkg_split(f)
            if any(e[0] == entry[0] for e in installed):
                print(f"the most recent version of {entry[0]}-{entry[1]} is already installed")
                continue
            print(f"Installing {entry[0]}-{entry[1]}...")
            installed.append(entry)
        save(installed)
        return 0
    if cmd == "install":
        repo_banner()
        if fail:
            sys.stderr.write("pkg: emulated failure (BASTILLE_EMU_FAIL=pkg)\n")
            return 1
        for n in names:
            if available is not None and n not in available and _pkg_split(n)[0] not in available:
                sys.stderr.write(
                    f"pkg: No packages available to install matching '{n}' have been found in the repositories\n"
                )
                return 1
        new = [_pkg_split(n) for n in names if not any(_pkg_match(e, n) for e in installed)]
        if not new:
            print("Checking integrity... done (0 conflicting)")
            print("The most recent versions of packages are already installed")
            return 0
        print(f"The following {len(new)} package(s) will be affected (of 0 checked):\n\nNew packages to be INSTALLED:")
        for n, v in new:
            print(f"\t{n}: {v}")
        print(f"\nNumber of packages to be installed: {len(new)}\n")
        if not assume_yes:
            sys.stdout.write("Proceed with this action? [y/N]: ")
            sys.stdout.flush()
            if sys.stdin.readline().strip().lower() not in ("y", "yes"):
                return 1
        for i, (n, v) in enumerate(new, 1):
            print(f"[{i}/{len(new)}] Installing {n}-{v}...")
        save(installed + new)
        return 0
    if cmd in ("delete", "remove"):
        missing = [n for n in names if not any(_pkg_match(e, n) for e in installed)]
        if missing:
            sys.stderr.write(f"pkg: No packages matched for pattern '{missing[0]}'\n")
            return 1
        keep = [e for e in installed if not any(_pkg_match(e, n) for n in names)]
        for n, v in installed:
            if (n, v) not in keep:
                print(f"Deinstalling {n}-{v}...")
        save(keep)
        return 0
    if cmd in ("info", "query"):
        if not names:
            for n, v in installed:
                print(f"{n + '-' + v:<31} emulated package")
            return 0
        hits = [e for e in installed if any(_pkg_match(e, n) for n in names)]
        ok = all(any(_pkg_match(e, n) for e in installed) for n in names)
        if "e" in sub_opts or "E" in sub_opts:
            return 0 if ok else 1
        if not ok:
            sys.stderr.write(f"pkg: No package(s) matching {names[0]}\n")
        for n, v in hits:
            print(f"{n}-{v}")
        return 0 if ok else 1
    if cmd in ("upgrade", "clean", "autoremove", "audit", "version", "check", "fetch"):
        repo_banner()
        return 1 if fail else 0
    sys.stderr.write(f"pkg: emulated pkg does not implement '{cmd}'\n")
    return 1


# ---------------------------------------------------------------------------------------------
# daemon(8): detach, pidfiles, -o log, -r restart, -u user
# ---------------------------------------------------------------------------------------------


def daemon_main(argv: list[str]) -> int:
    try:
        opts, cmd = _getopts(argv, "cfHrSp:P:t:u:m:o:s:T:l:R:C:")
    except ValueError as exc:
        sys.stderr.write(f"daemon: illegal option -- {exc}\n")
        return 1
    if not cmd:
        sys.stderr.write("usage: daemon [-cfHrS] [-p child_pidfile] [-P supervisor_pidfile] ... command ...\n")
        return 1
    if os.fork():
        return 0
    os.setsid()
    if os.fork():
        os._exit(0)
    if "c" in opts:
        os.chdir("/")
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    if "o" in opts:
        log = os.open(opts["o"][-1], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        os.dup2(log, 1)
        os.dup2(log, 2)
    elif "f" in opts:
        os.dup2(null, 1)
        os.dup2(null, 2)
    sup = (opts.get("P") or [""])[-1]
    child_pf = (opts.get("p") or [""])[-1]
    if sup:
        with open(sup, "w") as fh:
            fh.write(f"{os.getpid()}\n")
    restart = "r" in opts or "R" in opts
    delay = float((opts.get("R") or ["1"])[-1])
    child = 0

    def on_term(signum, frame):  # type: ignore[no-untyped-def]
        if child:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGTERM)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(child, 0)
        for pf in (sup, child_pf):
            if pf:
                with contextlib.suppress(OSError):
                    os.unlink(pf)
        os._exit(0)

    signal.signal(signal.SIGTERM, on_term)
    user = (opts.get("u") or [""])[-1]
    while True:
        child = os.fork()
        if child == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            if user:
                ent = next((r for r in _read_table("/etc/passwd") if r[0] == user), None)
                if ent is None:
                    os._exit(1)
                os.setgid(int(ent[3]))
                os.setuid(int(ent[2]))
                os.environ.update(HOME=ent[5], USER=user, LOGNAME=user)
            try:
                os.execvp(cmd[0], cmd)
            except OSError:
                os._exit(127)
        if child_pf:
            with open(child_pf, "w") as fh:
                fh.write(f"{child}\n")
        os.waitpid(child, 0)
        if not restart:
            break
        time.sleep(delay)
    for pf in (sup, child_pf):
        if pf:
            with contextlib.suppress(OSError):
                os.unlink(pf)
    os._exit(0)
