"""Host key lines, known_hosts files and the client key file's checks (no connection)."""

import base64
import hashlib
import hmac
import os
from pathlib import Path

import pytest

from colibri.adapters.ssh_keys import fingerprint, keys_from_known_hosts, normal_key_line, parse_key_line
from colibri.adapters.ssh_transport import load_client_key
from colibri.errors import ConfigError, InvalidInput, PermissionDenied

# a well-formed ed25519 public key line (a public key: nothing secret)
ED = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ4jS2T5Jm3cD3XqoP2i8VnR8nJb3TPO6lS0bYl5Y7+y"
ED_BLOB = base64.b64decode(ED.split()[1])


def _ed(seed: int) -> str:
    body = b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20" + bytes([seed]) * 32
    return "ssh-ed25519 " + base64.b64encode(body).decode()


def test_a_key_line_parses_and_drops_its_comment() -> None:
    assert parse_key_line(ED + " root@osa") == ("ssh-ed25519", ED_BLOB)
    assert normal_key_line(f"  {ED}   root@osa \n") == ED
    digest = base64.b64encode(hashlib.sha256(ED_BLOB).digest()).decode().rstrip("=")
    assert fingerprint(ED) == f"SHA256:{digest}"


@pytest.mark.parametrize(
    ("line", "why"),
    [("", "OpenSSH public key line"), ("ssh-dss AAAA", "not one of"), ("ssh-ed25519 !!!", "base64"),
     ("ssh-rsa " + ED.split()[1], "not a ssh-rsa key"), ("ssh-ed25519\x1b[2J AAAA", "not one of")],
)  # fmt: skip
def test_bad_key_lines(line: str, why: str) -> None:
    with pytest.raises(InvalidInput, match=why) as caught:
        parse_key_line(line)
    assert "\x1b" not in str(caught.value)


def test_known_hosts_gives_the_address_keys_only() -> None:
    other = _ed(7)
    salt = os.urandom(20)
    hashed = base64.b64encode(hmac.new(salt, b"[10.0.0.5]:2222", hashlib.sha1).digest()).decode()
    text = "\n".join((
        "# comment",
        f"10.0.0.9 {other}",
        f"osa,10.0.0.5 {ED} root@osa",
        f"@revoked 10.0.0.5 {_ed(9)}",
        f"|1|{base64.b64encode(salt).decode()}|{hashed} {_ed(8)}",
        "garbage line",
    ))  # fmt: skip
    assert keys_from_known_hosts(text, "10.0.0.5", 22) == (ED,)
    assert keys_from_known_hosts(text, "10.0.0.5", 2222) == (_ed(8),)
    assert keys_from_known_hosts(text, "10.0.0.7", 22) == ()
    assert keys_from_known_hosts(f"{ED} root@osa\n", "anything", 22) == (ED,)  # a host's .pub file


def test_client_key_must_be_private_to_root(tmp_path: Path) -> None:
    key = tmp_path / "id"
    key.write_text("not a key")
    key.chmod(0o640)
    with pytest.raises(PermissionDenied, match=f"{key} has mode 0640"):
        load_client_key(key)
    key.chmod(0o600)
    with pytest.raises(ConfigError, match="not an OpenSSH private key"):
        load_client_key(key)
    link = tmp_path / "link"
    link.symlink_to(key)
    with pytest.raises(PermissionDenied, match="cannot open"):
        load_client_key(link)
    with pytest.raises(ConfigError, match="does not exist"):
        load_client_key(tmp_path / "missing")
    if os.geteuid() == 0:
        os.chown(key, 1234, 1234)
        with pytest.raises(PermissionDenied, match="owned by uid 1234"):
            load_client_key(key)
