"""A throwaway self-signed certificate per server run.

bw (release builds) refuses plain http even on loopback, so the server always speaks TLS and
the client trusts this certificate through ``NODE_EXTRA_CA_CERTS``.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _certificate(key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "colibri vaultwarden test server")])
    now = dt.datetime.now(dt.UTC)
    san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")), x509.DNSName("localhost")])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))  # tolerate small clock skew
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(san, critical=False)
        # A trust anchor that is also the leaf: CA:TRUE keeps OpenSSL happy when it is
        # loaded as an extra CA and then presented by the server itself.
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )


def make_server_context(cert_out: Path) -> ssl.SSLContext:
    """Write a fresh certificate (PEM) to ``cert_out`` and return a server context using it."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _certificate(key)
    cert_out.parent.mkdir(parents=True, exist_ok=True)
    cert_out.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    # load_cert_chain only reads files: keep the key on disk just long enough to load it.
    fd, key_path = tempfile.mkstemp(prefix="vw-key-", suffix=".pem")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(key_pem)
        ctx.load_cert_chain(str(cert_out), key_path)
    finally:
        Path(key_path).unlink()
    return ctx


def client_context(ca_cert_path: Path) -> ssl.SSLContext:
    """For Python clients (tests) that talk to the server directly."""
    return ssl.create_default_context(cafile=str(ca_cert_path))
