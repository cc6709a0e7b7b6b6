#!/usr/bin/env python3
"""The mother skill: turn a jail into a working agent of the colibri hive.

Runs inside the jail with nothing but the Python standard library (3.11 on FreeBSD, Debian's
python3 in the Linux sandbox).  identity -> secrets check -> register -> heartbeat + poll:

1. read the identity file spawn wrote (``/usr/local/etc/colibri/agent.json``; ``--identity`` or
   ``COLIBRI_AGENT_IDENTITY`` override it): tenant, agent id, capabilities, socket, .env path,
   handlers directory.  It holds no secret;
2. refuse to start unless the .env is a regular file of mode 0600 owned by this user (exit 6);
   a tenant without secrets (the identity's ``secrets_expected`` is false: no collection, nothing
   staged) runs without one, and a .env that is there all the same is checked as above;
3. register over the tenant's socket, then heartbeat at the interval the daemon returns (a thread)
   while the main worker long-polls for tasks;
4. run the handler of the skill that provides the capability (``<skill dir>/handlers/<capability>``
   for the identity's ``skills``, else ``handlers_dir/<capability>``) with the payload (JSON) on
   stdin, its stdout (JSON, or text) and exit status reported back; a handler that hangs past its
   time or crashes is a task error.  At registration it reports what it loaded: each installed
   skill's name, version and the sha256 of the MANIFEST.json it read (the daemon refuses a skill
   or capability the host did not install for this tenant);
5. survive daemon restarts (reconnect with backoff, register again when the daemon forgot us);
6. on SIGTERM/SIGINT stop polling, stop a running handler, deregister (best effort), exit 0.

Exit codes: 0 clean stop, 2 bad command line, 3 bad identity file, 6 unsafe or missing .env, or
the daemon refused to register this agent (a skill or capability its host did not install).
"""

import argparse
import contextlib
import hashlib
import http.client
import json
import os
import random
import signal
import socket
import stat
import subprocess
import sys
import threading
import time

MOTHER_VERSION = "1"
DEFAULT_IDENTITY = "/usr/local/etc/colibri/agent.json"
HANDLER_TIMEOUT = 120.0
POLL_WAIT = 10.0
MAX_POLL_WAIT = 30.0  # the daemon refuses a longer claim wait with 400 (docs/openapi.yaml)
MAX_OUTPUT = 256 * 1024


class Refused(Exception):
    """The mother must not start; ``code`` is the exit status."""

    def __init__(self, message, code):
        super().__init__(message)
        self.code = code


class Forgotten(Exception):
    """The daemon does not know this agent (it restarted, or declared us lost): register again."""


class Unreachable(Exception):
    """The daemon's socket does not answer (or the answer was lost: calls that retry are idempotent)."""


class Denied(RuntimeError):
    """The daemon refused this agent for good (403: a skill or capability its host did not install
    for the tenant, or a tenant that lives on another host): retrying cannot help."""


class Busy(Unreachable):
    """The daemon refused for now (429 over a limit, 503 stopping or store down): try again later."""


READY = "ready: identity read and .env checked"
"""The line spawn waits for (colibri.services.lifecycle.mother.MOTHER_READY): keep the two in step."""
REFUSED = "refusing to start: "
"""How every refusal line begins (colibri.services.lifecycle.mother.MOTHER_REFUSED); spawn shows the rest."""


def log(message):
    sys.stderr.write(f"mother[{os.getpid()}]: {message}\n")
    sys.stderr.flush()


# ---- identity and secrets -------------------------------------------------------------------


def load_identity(path):
    try:
        with open(path, encoding="utf-8") as handle:
            identity = json.load(handle)
    except FileNotFoundError:
        raise Refused(f"identity file not found: {path}", 3) from None
    except (OSError, ValueError) as exc:
        raise Refused(f"cannot read the identity file {path}: {exc}", 3) from None
    if not isinstance(identity, dict):
        raise Refused(f"identity file {path}: not a JSON object", 3)
    for key in ("tenant", "agent_id", "socket", "env_file", "handlers_dir"):
        if not isinstance(identity.get(key), str) or not identity[key]:
            raise Refused(f"identity file {path}: {key!r} is missing", 3)
    capabilities = identity.get("capabilities", [])
    if not isinstance(capabilities, list) or not all(isinstance(c, dict) and "name" in c for c in capabilities):
        raise Refused(f'identity file {path}: capabilities must be a list of {{"name", "version"}}', 3)
    skills = identity.setdefault("skills", [])
    if not isinstance(skills, list) or not all(
        isinstance(s, dict) and isinstance(s.get("name"), str) and isinstance(s.get("dir"), str) for s in skills
    ):
        raise Refused(f'identity file {path}: skills must be a list of {{"name", "version", "dir"}}', 3)
    # Absent (an identity from before it existed): secrets are expected, fail closed.
    if not isinstance(identity.setdefault("secrets_expected", True), bool):
        raise Refused(f"identity file {path}: 'secrets_expected' must be true or false", 3)
    return identity


def check_secrets(env_file, expected=True):
    """The .env must be a regular file, mode 0600, owned by the user we run as (fail closed).
    When no secrets are ``expected`` a missing one is fine (returns False); one that is there is
    checked all the same.  Returns True when a .env is there and in order."""
    try:
        info = os.lstat(env_file)
    except FileNotFoundError:
        if not expected:
            return False
        raise Refused(f"refusing to start: the secrets file {env_file} is missing", 6) from None
    except OSError as exc:
        raise Refused(f"refusing to start: cannot inspect {env_file}: {exc.strerror}", 6) from None
    if not stat.S_ISREG(info.st_mode):
        raise Refused(f"refusing to start: {env_file} is not a regular file", 6)
    mode = stat.S_IMODE(info.st_mode)
    if mode != 0o600:
        raise Refused(f"refusing to start: {env_file} has mode {mode:04o}; it must be 0600", 6)
    if info.st_uid != os.geteuid():
        raise Refused(
            f"refusing to start: {env_file} is owned by uid {info.st_uid}, not by this user (uid {os.geteuid()})",
            6,
        )
    return True


MAX_MANIFEST = 1 << 20


def loaded_skills(identity):
    """What this mother loaded: each installed skill's name, version and the sha256 of the
    MANIFEST.json it read (None when it could not read one: the daemon refuses that)."""
    found = []
    for skill in identity.get("skills", []):
        digest = None
        try:
            with open(os.path.join(skill["dir"], "MANIFEST.json"), "rb") as handle:
                data = handle.read(MAX_MANIFEST + 1)
            if len(data) <= MAX_MANIFEST:
                digest = "sha256:" + hashlib.sha256(data).hexdigest()
        except OSError:
            pass
        found.append({"name": skill["name"], "version": str(skill.get("version", "")), "manifest": digest})
    return found


def handler_path(identity, capability):
    """The handler of ``capability``: in the installed skill that provides it, else handlers_dir."""
    for skill in identity.get("skills", []):
        if capability in skill.get("capabilities", []):
            return os.path.join(skill["dir"], "handlers", capability)
    return os.path.join(identity["handlers_dir"], capability)


# ---- the daemon's API over the tenant socket ----------------------------------------------------


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class Api:
    """One keep-alive connection per thread; reconnects on the next call after any failure."""

    def __init__(self, socket_path, agent_id, tenant):
        self.socket_path = socket_path
        self.agent_id = agent_id
        self.tenant = tenant
        self._conn = None

    def call(self, path, body, timeout=15.0):
        payload = json.dumps({"agent_id": self.agent_id, **body}).encode()
        try:
            if self._conn is None:
                self._conn = UnixConnection(self.socket_path, timeout)
            self._conn.timeout = timeout
            if self._conn.sock is not None:
                self._conn.sock.settimeout(timeout)
            self._conn.request("POST", path, body=payload, headers={"Content-Type": "application/json"})
            response = self._conn.getresponse()
            raw = response.read()
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise Unreachable(str(exc) or type(exc).__name__) from None
        if response.getheader("Connection", "").lower() == "close":
            self.close()
        if response.status == 204:
            return None
        try:
            data = json.loads(raw) if raw else {}
        except ValueError:
            data = {}
        if not isinstance(data, dict):
            data = {}
        if response.status == 404 and data.get("error", {}).get("type") == "AgentNotFound":
            raise Forgotten(data["error"]["message"])
        if response.status == 403:
            raise Denied(data.get("error", {}).get("message", "") or f"{path}: HTTP 403")
        if response.status in (429, 503):
            raise Busy(f"{path}: HTTP {response.status} {data.get('error', {}).get('message', '')}")
        if response.status >= 400:
            message = data.get("error", {}).get("message", "")
            raise RuntimeError(f"{path}: HTTP {response.status} {message}")
        return data

    def close(self):
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def abort(self):
        """Unblock a thread waiting in a long-poll (called from another thread)."""
        conn = self._conn
        if conn is not None and conn.sock is not None:
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RDWR)


# ---- the agent ------------------------------------------------------------------------------------


class Mother:
    def __init__(self, identity, handler_timeout=HANDLER_TIMEOUT, poll_wait=POLL_WAIT):
        self.identity = identity
        self.handler_timeout = handler_timeout
        self.poll_wait = poll_wait
        self.stop = threading.Event()
        self.reg_lock = threading.Lock()
        self.generation = 0  # bumped at every registration: an older lease is void
        self.interval = 10.0
        self.lock = threading.Lock()
        self.child = None
        self.worker_api = Api(identity["socket"], identity["agent_id"], identity["tenant"])
        self.beat_api = Api(identity["socket"], identity["agent_id"], identity["tenant"])
        self.loaded = loaded_skills(identity)
        self.denied = False

    def register(self, api):
        """Register (again), retrying with backoff until the daemon answers or we are stopped."""
        delay = 0.2
        while not self.stop.is_set():
            try:
                answer = api.call(
                    "/v1/agent/register",
                    {
                        "tenant": self.identity["tenant"],
                        "capabilities": self.identity.get("capabilities", []),
                        "mother_version": MOTHER_VERSION,
                        "skills": self.loaded,
                    },
                )
            except Denied as exc:
                log(f"register refused by the daemon: {str(exc)[:300]}; stopping")
                self.denied = True
                self.stop.set()
                return False
            except (Unreachable, RuntimeError, Forgotten) as exc:
                log(f"register: {exc}; retrying in {delay:.1f} s")
                self.stop.wait(delay * (1 + random.random() / 2))
                delay = min(delay * 2, 5.0)
                continue
            with self.lock:
                self.generation += 1
                self.interval = float(answer.get("interval", 10.0))
                self._kill_child("registered again: the old lease is void")
            log(f"registered as {self.identity['tenant']}/{self.identity['agent_id']} "
                f"(heartbeat every {self.interval:.1f} s)")  # fmt: skip
            return True
        return False

    # heartbeat thread
    def reregister(self, api, seen):
        """Register again unless the other thread already did since generation ``seen``."""
        with self.reg_lock:
            if self.generation == seen:
                log("the daemon does not know us (restarted, or declared us lost): registering again")
                self.register(api)

    def heartbeats(self):
        delay, wait = 0.2, self.interval
        while not self.stop.wait(wait):
            seen = self.generation
            try:
                answer = self.beat_api.call("/v1/agent/heartbeat", {"tenant": self.identity["tenant"]}, timeout=10)
            except Forgotten:
                self.reregister(self.beat_api, seen)
                wait = self.interval
                continue
            except (Unreachable, RuntimeError) as exc:
                delay = min(delay * 2, 5.0)
                log(f"heartbeat: {exc}; retrying in {delay:.1f} s")
                wait = delay
                continue
            delay = 0.2
            self.interval = wait = float(answer.get("interval", self.interval))
            for action in answer.get("actions", []):
                self.act(action)

    def act(self, action):
        if action == "reload-secrets":
            try:
                check_secrets(self.identity["env_file"], self.identity["secrets_expected"])
                log("secrets changed: the .env was checked again and is in order")
            except Refused as exc:
                log(f"secrets changed, and now: {exc}; stopping")
                self.stop.set()
        else:
            log(f"unknown action from the daemon ignored: {action}")

    # worker (main thread of work)
    def work(self):
        delay = 0.2
        while not self.stop.is_set():
            seen = self.generation
            try:
                task = self.worker_api.call("/v1/tasks/claim", {"wait": self.poll_wait}, timeout=self.poll_wait + 10)
            except Forgotten:
                self.reregister(self.worker_api, seen)
                continue
            except (Unreachable, RuntimeError) as exc:
                if self.stop.is_set():
                    return
                log(f"poll: {exc}; retrying in {delay:.1f} s")
                self.stop.wait(delay * (1 + random.random() / 2))
                delay = min(delay * 2, 5.0)
                continue
            delay = 0.2
            if task is not None:
                self.run_task(task)

    def run_task(self, task):
        with self.lock:
            generation = self.generation
        lease_left = float(task.get("lease_seconds", self.handler_timeout)) - 2.0
        timeout = max(0.5, min(self.handler_timeout, lease_left))
        outcome = self.run_handler(task, timeout)
        with self.lock:
            if generation != self.generation:
                log(f"task {task['id']}: dropped, its lease ended when we registered again")
                return
        self.report(task, outcome)

    def run_handler(self, task, timeout):
        capability = task["capability"]
        handler = handler_path(self.identity, capability)
        if "/" in capability or not os.access(handler, os.X_OK):
            return {"ok": False, "error": f"no handler for capability {capability!r} at {handler}"}
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/"),
            "LANG": "C.UTF-8",
            "COLIBRI_TASK_ID": str(task["id"]),
            "COLIBRI_CAPABILITY": capability,
            "COLIBRI_TENANT": self.identity["tenant"],
            "COLIBRI_ENV_FILE": self.identity["env_file"],  # the path only: handlers read it themselves
        }
        try:
            with self.lock:
                self.child = subprocess.Popen(
                    [handler],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    env=env,
                    start_new_session=True,
                )
                child = self.child
            try:
                out, err = child.communicate(json.dumps(task.get("payload")).encode(), timeout=timeout)
            except subprocess.TimeoutExpired:
                self._kill(child)
                child.communicate()
                return {"ok": False, "error": f"handler timed out after {timeout:g} s", "exit_status": None}
        except OSError as exc:
            return {"ok": False, "error": f"cannot run handler {handler}: {exc.strerror}"}
        finally:
            with self.lock:
                self.child = None
        return self.outcome(child.returncode, out, err)

    @staticmethod
    def outcome(status, out, err):
        text = out[:MAX_OUTPUT].decode("utf-8", "replace")
        try:
            result = json.loads(text) if text.strip() else None
        except ValueError:
            result = {"stdout": text}
        if status == 0:
            return {"ok": True, "result": result, "exit_status": 0}
        tail = err[-2000:].decode("utf-8", "replace").strip()
        why = f"killed by signal {-status}" if status < 0 else f"exited with status {status}"
        return {"ok": False, "result": result, "exit_status": status, "error": f"handler {why}: {tail}"[:3900]}

    def report(self, task, outcome):
        """Send the outcome; keep trying (the lease is kept across daemon restarts) until it ends.

        Retrying is safe: the daemon answers a repeated report with the same lease with the task as
        first recorded, so a lost answer neither fails the report nor completes the task twice."""
        deadline = time.monotonic() + float(task.get("lease_seconds", 60))
        delay = 0.2
        body = {"tenant": self.identity["tenant"], "lease": task["lease"], **outcome}
        while time.monotonic() < deadline:
            try:
                self.worker_api.call(f"/v1/tasks/{task['id']}/result", body)
                log(f"task {task['id']} ({task['capability']}): {'done' if outcome['ok'] else outcome['error']}")
                return
            except (Unreachable, Forgotten) as exc:
                log(f"report of task {task['id']}: {exc}; retrying in {delay:.1f} s")
            except RuntimeError as exc:  # 409: the lease is gone, the task went back to the queue
                log(f"report of task {task['id']} refused: {exc}")
                return
            if self.stop.wait(delay):
                return
            delay = min(delay * 2, 5.0)

    def _kill_child(self, why):
        if self.child is not None:
            log(f"stopping the running handler: {why}")
            self._kill(self.child)

    @staticmethod
    def _kill(child):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.pid, signal.SIGKILL)

    def shutdown(self):
        """SIGTERM: stop polling and heartbeats, stop a running handler, deregister (best effort)."""
        self.stop.set()
        with self.lock:
            self._kill_child("the agent is stopping")
        self.worker_api.abort()
        self.beat_api.abort()

    def deregister(self):
        api = Api(self.identity["socket"], self.identity["agent_id"], self.identity["tenant"])
        try:
            api.call("/v1/agent/deregister", {"tenant": self.identity["tenant"]}, timeout=3)
            log("deregistered")
        except (Unreachable, Forgotten, RuntimeError) as exc:
            log(f"deregister skipped: {exc}")
        finally:
            api.close()


def _seconds(upper):
    """An argparse type: finite seconds in (0, upper], refused (exit 2) outside it, never clamped."""

    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number of seconds: {text[:40]!r}") from None
        if not 0 < value <= upper:  # also refuses nan; inf is above any bound
            raise argparse.ArgumentTypeError(f"must be more than 0 and at most {upper:g} seconds")
        return value

    return parse


def main(argv=None):
    parser = argparse.ArgumentParser(description="colibri's mother skill: register, heartbeat, run tasks.")
    parser.add_argument("--identity", default=os.environ.get("COLIBRI_AGENT_IDENTITY", DEFAULT_IDENTITY))
    parser.add_argument("--handler-timeout", type=_seconds(86400.0), default=HANDLER_TIMEOUT)
    parser.add_argument("--poll-wait", type=_seconds(MAX_POLL_WAIT), default=POLL_WAIT)
    args = parser.parse_args(argv)
    try:
        identity = load_identity(args.identity)
        if not check_secrets(identity["env_file"], identity["secrets_expected"]):
            log(f"no secrets expected for tenant {identity['tenant']} and no {identity['env_file']}: running without")
    except Refused as exc:
        reason = str(exc).removeprefix(REFUSED)
        log(f"{REFUSED}{reason}")  # one line, with the reason: spawn reports it and fails
        return exc.code
    log(READY)  # spawn waits for this line: identity read, .env checked
    mother = Mother(identity, args.handler_timeout, args.poll_wait)
    signal.signal(signal.SIGTERM, lambda *_: mother.shutdown())
    signal.signal(signal.SIGINT, lambda *_: mother.shutdown())
    beats = threading.Thread(target=mother.heartbeats, name="heartbeat", daemon=True)
    worker = threading.Thread(target=mother.work, name="worker", daemon=True)
    if not mother.register(mother.worker_api):
        return 6 if mother.denied else 0
    beats.start()
    worker.start()
    while worker.is_alive():
        worker.join(0.2)  # the main thread stays free for signal handlers
    mother.shutdown()
    beats.join(5)
    mother.worker_api.close()
    mother.beat_api.close()
    mother.deregister()
    return 0


if __name__ == "__main__":
    sys.exit(main())
