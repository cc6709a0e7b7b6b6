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
# service(8): runs the rc.d script, as service(8) does (usr.sbin/service/service.sh: `cd /`,
# `env -i HOME=/ PATH=/sbin:/bin:/usr/sbin:/usr/bin:/usr/local/sbin:/usr/local/bin script args`).
# rc.subr scripts source the emulated /etc/rc.subr (jailbin/rc.subr), so their answers, exit
# codes and the processes they start are real.
# ---------------------------------------------------------------------------------------------

RC_DIRS = ["/etc/rc.d", "/usr/local/etc/rc.d"]
SERVICE_PATH = "/sbin:/bin:/usr/sbin:/usr/bin:/usr/local/sbin:/usr/local/bin"


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


def run_rc_script(script: str, args: list[str]) -> int:
    """Run one rc.d script the way service(8) and /etc/rc do: a clean environment, cwd /."""
    env = {"HOME": "/", "PATH": SERVICE_PATH}
    return subprocess.call(["/bin/sh", script, *args], env=env, cwd="/")


def rc_autostart() -> list[str]:
    """What jail(8)'s exec.start (/bin/sh /etc/rc, not autoboot) does: run every rc.d script with
    ``quietstart`` (libexec/rc/rc: _boot=quietstart), /etc/rc.d first, then the local_startup
    directory; rcorder(8) is not emulated (names in order).  Disabled services answer 0 quietly."""
    started = []
    for d in RC_DIRS:
        with contextlib.suppress(OSError):
            for n in sorted(os.listdir(d)):
                p = os.path.join(d, n)
                if os.path.isfile(p) and os.access(p, os.X_OK) and run_rc_script(p, ["quietstart"]) == 0:
                    started.append(n)
    return started


def service_main(argv: list[str]) -> int:
    usage = "usage: service [-j <jail name or id>] [-rv] <rc.d script> start|stop|etc.\n"
    if not argv:
        sys.stderr.write(usage)
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
        sys.stderr.write(usage)
        return 1
    script = find_rc_script(argv[0])
    if script is None or not os.access(script, os.X_OK):
        sys.stderr.write(
            f"{argv[0]} does not exist in /etc/rc.d or the local startup\n"
            f"directories (/usr/local/etc/rc.d), or is not executable\n"
        )
        return 1
    sys.stdout.flush()
    return run_rc_script(script, argv[1:])


# ---------------------------------------------------------------------------------------------
# pkg(7) and pkg(8): in _pkg.py (the `pkg` shim imports it).
# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# daemon(8), after usr.sbin/daemon/daemon.c (FreeBSD 14): the pidfiles are opened and locked
# before detaching (a locked one: "process already running, pid: N", exit 3); supervision mode
# (-p -P -r -R -o -S -s -l -T) forks the child, which writes the child pidfile, drops to -u USER
# (setusercontext: groups, uid, USER/HOME/SHELL) and execs the command with stdout+stderr on a
# pipe; the supervisor (still root) appends what it reads to -o FILE, reopens it on SIGHUP with
# -H, restarts the child -R N seconds (-r: 1) after it exits, and on SIGTERM forwards it to the
# child and exits, removing both pidfiles.  Syslog output (-S ...) is discarded (no syslogd).
# ---------------------------------------------------------------------------------------------


class _Terminate(Exception):
    pass


def _pidfile_open(path: str) -> int:
    """pidfile_open(3): create or open, lock, never truncate someone else's."""
    import fcntl

    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        sys.stderr.write(f"daemon: pidfile ``{path}'': {exc.strerror}\n")
        raise SystemExit(2) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        with open(path) as fh:
            other = fh.read().strip()
        sys.stderr.write(f"daemon: process already running, pid: {other}\n")
        raise SystemExit(3) from None
    return fd


def _pidfile_write(fd: int) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)


def _restrict_process(user: str) -> None:
    import grp
    import pwd

    try:
        ent = pwd.getpwnam(user)
    except KeyError:
        sys.stderr.write(f"daemon: unknown user: {user}\n")
        os._exit(1)
    try:
        os.setgroups([g.gr_gid for g in grp.getgrall() if user in g.gr_mem] + [ent.pw_gid])
        os.setgid(ent.pw_gid)
        os.setuid(ent.pw_uid)
    except OSError:
        sys.stderr.write("daemon: failed to set user environment\n")
        os._exit(1)
    os.environ.update(USER=ent.pw_name, HOME=ent.pw_dir, SHELL=ent.pw_shell or "/bin/sh")


def daemon_main(argv: list[str]) -> int:
    try:
        opts, cmd = _getopts(argv, "cfHrSp:P:t:u:m:o:s:T:l:R:h")
    except ValueError as exc:
        sys.stderr.write(f"daemon: illegal option -- {exc}\n")
        return 1
    if not cmd or "h" in opts:
        sys.stderr.write(
            "usage: daemon [-cfHrS] [-p child_pidfile] [-P supervisor_pidfile]\n"
            "              [-u user] [-o output_file] [-t title]\n"
            "              [-l syslog_facility] [-s syslog_priority]\n"
            "              [-T syslog_tag] [-m output_mask] [-R restart_delay_secs]\n"
            "command arguments ...\n"
        )
        return 0 if "h" in opts and cmd else 1
    restart = "r" in opts or "R" in opts
    delay = 1
    if "R" in opts:
        try:
            delay = int(opts["R"][-1], 0)
        except ValueError:
            delay = 0
        if delay < 1:
            sys.stderr.write("daemon: invalid restart delay\n")
            return 6
    mask = 3
    if "m" in opts:
        try:
            mask = int(opts["m"][-1])
        except ValueError:
            mask = -1
        if not 0 <= mask <= 3:
            sys.stderr.write("daemon: unrecognized listening mask\n")
            return 6
    supervised = any(k in opts for k in "pPrRoSslT")
    out_name = (opts.get("o") or [""])[-1]
    out_fd = -1
    if out_name:
        try:
            out_fd = os.open(out_name, os.O_CREAT | os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            sys.stderr.write(f"daemon: open: {exc.strerror}\n")
            return 7
    child_pf = (opts.get("p") or [""])[-1]
    sup_pf = (opts.get("P") or [""])[-1]
    child_fd = sup_fd = -1
    try:
        child_fd = _pidfile_open(child_pf) if child_pf else -1
        sup_fd = _pidfile_open(sup_pf) if sup_pf else -1
    except SystemExit as exc:
        if child_fd >= 0 and exc.code != 3:  # pidfile_remove(3) of the one already opened
            with contextlib.suppress(OSError):
                os.unlink(child_pf)
        return int(exc.code or 1)
    # daemon(3): fork (the parent returns 0 to rc), setsid, chdir / with -c, /dev/null with -f
    if os.fork():
        return 0
    os.setsid()
    if os.fork():
        os._exit(0)
    if "c" in opts:
        os.chdir("/")
    if "f" in opts:
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.close(null)
    user = (opts.get("u") or [""])[-1]
    if not supervised:
        if user:
            _restrict_process(user)
        try:
            os.execvp(cmd[0], cmd)
        except OSError as exc:
            sys.stderr.write(f"daemon: {cmd[0]}: {exc.strerror}\n")
            os._exit(1)
    if sup_fd >= 0:
        _pidfile_write(sup_fd)

    state = {"child": 0, "reopen": False, "terminate": False}

    def on_term(signum, frame):  # type: ignore[no-untyped-def]
        if state["child"]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(state["child"], signal.SIGTERM)
        state["terminate"] = True
        raise _Terminate

    def on_hup(signum, frame):  # type: ignore[no-untyped-def]
        state["reopen"] = True

    signal.signal(signal.SIGTERM, on_term)
    if "H" in opts and out_fd >= 0:
        signal.signal(signal.SIGHUP, on_hup)
    try:
        while True:
            rfd, wfd = os.pipe()
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
            pid = os.fork()
            if pid == 0:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGHUP, signal.SIG_DFL)
                if child_fd >= 0:
                    _pidfile_write(child_fd)
                if user:
                    _restrict_process(user)
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
                os.close(rfd)
                if mask & 2:
                    os.dup2(wfd, 2)
                if mask & 1:
                    os.dup2(wfd, 1)
                if wfd not in (1, 2):
                    os.close(wfd)
                try:
                    os.execvp(cmd[0], cmd)
                except OSError as exc:
                    os.write(2, f"daemon: {cmd[0]}: {exc.strerror}\n".encode())
                    os._exit(1)
            state["child"] = pid
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
            os.close(wfd)
            while True:
                if state["reopen"] and out_fd >= 0:
                    state["reopen"] = False
                    with contextlib.suppress(OSError):
                        new = os.open(out_name, os.O_CREAT | os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC, 0o600)
                        os.close(out_fd)
                        out_fd = new
                data = os.read(rfd, 4096)
                if not data:
                    break
                if out_fd >= 0:
                    os.write(out_fd, data)
                elif "f" not in opts and "S" not in opts:
                    os.write(1, data)
            os.close(rfd)
            os.waitpid(pid, 0)
            state["child"] = 0
            if not restart:
                break
            time.sleep(delay)
    except _Terminate:
        pass
    for fd, path in ((child_fd, child_pf), (sup_fd, sup_pf)):
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.unlink(path)
    os._exit(1)


# ---------------------------------------------------------------------------------------------
# su(1), the form rc.subr uses for ${name}_user: `su -m USER -c 'sh -c "CMD"'`.  On FreeBSD the
# words after the login name go to the shell (-c before it would be a login class), root needs no
# password, and -m keeps the environment and the invoker's shell (here always /bin/sh).
# ---------------------------------------------------------------------------------------------


def su_main(argv: list[str]) -> int:
    import pwd

    args = list(argv)
    while args and args[0].startswith("-") and args[0] != "-":
        opt = args.pop(0)
        if opt == "-c" and args:
            args.pop(0)  # a login class
    if args and args[0] == "-":
        args.pop(0)
    login = args.pop(0) if args else "root"
    try:
        ent = pwd.getpwnam(login)
    except KeyError:
        sys.stderr.write(f"su: unknown login: {login}\n")
        return 1
    if os.geteuid() != 0:
        sys.stderr.write("su: Sorry\n")
        return 1
    import grp

    os.setgroups([g.gr_gid for g in grp.getgrall() if login in g.gr_mem] + [ent.pw_gid])
    os.setgid(ent.pw_gid)
    os.setuid(ent.pw_uid)
    os.execv("/bin/sh", ["sh", *args])
    return 1
