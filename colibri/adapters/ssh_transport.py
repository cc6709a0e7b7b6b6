"""The pinned-key SSH connection to one host of a hive (paramiko; only ``colibri/adapters/ssh*.py``
import it).

``connect`` opens one authenticated ``paramiko.Transport``.  The host key is pinned: the Transport
negotiates only the pinned key types, and the server's key must be one of the pinned ones BEFORE
authentication, so a changed key is refused with nothing sent (no TOFU, no AutoAddPolicy, no agent,
no ``~/.ssh`` keys, no agent forwarding).  The client key is one file, refused unless it is owned by
root (or the current user) and not readable by anyone else (``load_client_key``).  The kept
channels over the Transport, and the pool of them, are ``colibri.adapters.ssh``.
"""

import io
import logging
import os
import socket
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import paramiko

from colibri.adapters.ssh_keys import fingerprint, parse_key_line
from colibri.errors import ConfigError, HostKeyRefused, PermissionDenied, RemoteError

_NEGOTIATED = {"ssh-rsa": ("rsa-sha2-512", "rsa-sha2-256")}
"""What the Transport offers for a pinned key type (an RSA key is signed with SHA-2)."""
MAX_KEY_FILE = 64 * 1024
_PARAMIKO_LOG = logging.getLogger("paramiko")
_PARAMIKO_LOG.addHandler(logging.NullHandler())
_PARAMIKO_LOG.propagate = False  # its records are tracebacks and the peer's text: colibri raises one clear error


@dataclass(frozen=True)
class SshTarget:
    """How to reach one host: ``user@address:port``, its pinned host keys (OpenSSH public key lines
    ``ssh-ed25519 AAAA...``) and the remote colibri command."""

    name: str
    user: str
    address: str
    port: int
    host_keys: tuple[str, ...]
    command: str


# --- the client key -----------------------------------------------------------------------------


def load_client_key(path: Path) -> paramiko.PKey:
    """The private key in ``path``, refused (PermissionDenied, naming the file) unless it is a
    regular file owned by root or the current user with no group or other permission, as ssh(1)
    refuses an unprotected key."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ConfigError(f"ssh_key_file {path} does not exist (see runbooks/add-host.md)") from None
    except OSError as exc:
        raise PermissionDenied(f"cannot open ssh_key_file {path}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise PermissionDenied(f"ssh_key_file {path} is not a regular file")
        if info.st_uid not in (0, os.geteuid()):
            raise PermissionDenied(f"ssh_key_file {path} is owned by uid {info.st_uid}, not root; refused")
        if info.st_mode & 0o077:
            mode = stat.S_IMODE(info.st_mode)
            raise PermissionDenied(f"ssh_key_file {path} has mode {mode:04o}; it must be 0600 or 0400; refused")
        raw = os.read(fd, MAX_KEY_FILE + 1)
    finally:
        os.close(fd)
    if len(raw) > MAX_KEY_FILE:
        raise ConfigError(f"ssh_key_file {path} is not a private key (over {MAX_KEY_FILE} bytes)")
    text = raw.decode("utf-8", "replace")
    for kind in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return kind.from_private_key(io.StringIO(text))
        except paramiko.PasswordRequiredException:
            raise ConfigError(f"ssh_key_file {path} is encrypted; colibri needs a key without a passphrase") from None
        except (paramiko.SSHException, ValueError, TypeError, IndexError):
            continue
    raise ConfigError(f"ssh_key_file {path} is not an OpenSSH private key (ed25519, ecdsa or rsa)")


# --- the connection ---------------------------------------------------------------------------


def connect(
    target: SshTarget,
    client_key: Callable[[], paramiko.PKey],
    key_file: Path,
    timeout: float,
    keepalive: float,
) -> paramiko.Transport:
    """A new authenticated Transport to ``target``, the host key checked against the pin before
    auth (``client_key`` is loaded only once there is a pin; ``key_file`` names it in errors),
    every step bounded by ``timeout``, a keepalive every ``keepalive`` seconds."""
    pinned = [parse_key_line(line) for line in target.host_keys]
    if not pinned:
        raise HostKeyRefused(f"host {target.name} has no pinned host key; nothing was sent")
    key = client_key()
    where = f"host {target.name} ({target.user}@{target.address}:{target.port})"
    try:
        sock = socket.create_connection((target.address, target.port), timeout=timeout)
    except TimeoutError:
        raise RemoteError(f"{where} did not answer within {timeout:g} s") from None
    except OSError as exc:
        raise RemoteError(f"cannot connect to {where}: {exc.strerror or type(exc).__name__}") from None
    transport = paramiko.Transport(sock)
    try:
        transport.banner_timeout = transport.handshake_timeout = transport.auth_timeout = timeout
        offered = [t for kind, _ in pinned for t in _NEGOTIATED.get(kind, (kind,))]
        transport.get_security_options().key_types = tuple(dict.fromkeys(offered))
        transport.set_keepalive(max(1, int(keepalive)))
        transport.start_client(timeout=timeout)  # returns quietly when its timeout passes
        if not transport.is_active() or not transport.initial_kex_done:
            raise TimeoutError
        server = transport.get_remote_server_key()
        blob = server.asbytes()
        if not any(blob == pin_blob for _, pin_blob in pinned):
            raise HostKeyRefused(
                f"{where} presented the {server.get_name()} key "
                f"{fingerprint(f'{server.get_name()} {server.get_base64()}')}, which is not the pinned one; "
                "refused before authentication, nothing was sent (if the host was reinstalled, "
                "re-enrol it: colibri hosts remove, then hosts add with the new key)"
            )
        transport.auth_publickey(target.user, key)
        if not transport.is_authenticated():
            raise paramiko.AuthenticationException
    except HostKeyRefused:
        transport.close()
        raise
    except paramiko.ssh_exception.IncompatiblePeer:
        transport.close()
        kinds = ", ".join(dict.fromkeys(kind for kind, _ in pinned))
        raise HostKeyRefused(
            f"{where} offers no host key of the pinned type ({kinds}); refused before authentication, nothing was sent"
        ) from None
    except paramiko.AuthenticationException as exc:
        transport.close()
        if "timeout" in str(exc).lower():  # paramiko's auth_timeout: the server never answered
            raise RemoteError(f"{where} did not answer authentication within {timeout:g} s") from None
        raise RemoteError(
            f"{where} refused the key in {key_file} for user {target.user} "
            "(is its public key in that user's authorized_keys?)"
        ) from None
    except (paramiko.SSHException, OSError, EOFError) as exc:
        transport.close()
        text = str(exc).lower()
        if isinstance(exc, TimeoutError) or "timeout" in text or "banner" in text or "timed out" in text:
            raise RemoteError(
                f"{where}: no SSH handshake (no SSH banner within {timeout:g} s, or the connection closed)"
            ) from None
        raise RemoteError(f"{where}: SSH failed ({type(exc).__name__})") from None
    except BaseException:
        transport.close()
        raise
    return transport
