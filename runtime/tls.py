"""TLS for a cluster's channels: a cluster CA, and one node certificate under a fixed name.

Node addresses are not known when the head starts (clouds hand them out later), so the node
certificate names TLS_NAME, not an address, and every client verifies that name against the
cluster's CA rather than the address it dialled. The CA key signs the node certificate and is then
thrown away: nothing else can be issued for the cluster. The three PEM blocks (CA certificate,
node certificate, node key) follow the token in the cluster's token file (runtime/auth.py), 0600,
so they travel to nodes, drivers and workers wherever the token file goes, and a copy of the token
without them cannot exist by mistake. Contexts load them through memfd, never a file on disk.

TLS keeps the path private and intact; who may talk is still decided by the token's proofs
(runtime/auth.py), which run inside it.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import os
import re
import ssl
from collections.abc import Iterator
from dataclasses import dataclass

TLS_NAME = "rayctl-cluster"  # the name in every node certificate, and what clients verify
VALID_DAYS = 3650


@dataclass(eq=False)
class ClusterTls:
    """A cluster's TLS material (PEM) and the contexts made from it (made once: loading a CA
    costs about a millisecond)."""

    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes

    @functools.cached_property
    def server(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        with _memfile(self.cert_pem) as cert, _memfile(self.key_pem) as key:
            ctx.load_cert_chain(cert, key)
        return ctx

    @functools.cached_property
    def client(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the chain and the name
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_verify_locations(cadata=self.ca_pem.decode())
        return ctx


def create_cluster_tls() -> ClusterTls:
    """A new CA and node certificate for one cluster (the CA key is dropped on return)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rayctl cluster CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, key_cert_sign=True, crl_sign=True,
                                     encipher_only=False, decipher_only=False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    node_key = ec.generate_private_key(ec.SECP256R1())
    node_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, TLS_NAME)]))
        .issuer_name(ca_name)
        .public_key(node_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(TLS_NAME)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH,
                                              x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    return ClusterTls(
        ca_cert.public_bytes(pem),
        node_cert.public_bytes(pem),
        node_key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                               serialization.NoEncryption()),
    )


_BLOCK = re.compile(rb"-----BEGIN ([A-Z ]+)-----\r?\n.*?-----END \1-----\r?\n?", re.S)


def to_pem(tls: ClusterTls) -> str:
    """The three blocks, in the order `from_pem` reads them."""
    return b"".join(block.rstrip(b"\n") + b"\n" for block in (tls.ca_pem, tls.cert_pem,
                                                              tls.key_pem)).decode()


def from_pem(text: str, where: str) -> ClusterTls | None:
    """The material after a token, or None when there is none (a cluster without TLS)."""
    blocks = [m.group(0) for m in _BLOCK.finditer(text.encode())]
    if not blocks:
        return None
    kinds = [m.group(1) for m in _BLOCK.finditer(text.encode())]
    if kinds != [b"CERTIFICATE", b"CERTIFICATE", b"PRIVATE KEY"]:
        raise ValueError(
            f"{where}: expected the cluster token then a CA certificate, a node certificate and "
            f"a private key, found {', '.join(k.decode() for k in kinds)}; copy the head's token "
            "file whole"
        )
    return ClusterTls(*blocks)


def speaks_tls(address: str, timeout_s: float = 2.0) -> bool:
    """Whether what listens at `address` completes a TLS handshake (certificate not checked:
    this only tells a client without the material what it is missing)."""
    import socket

    host, _, port = address.rpartition(":")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s) as sock, \
                ctx.wrap_socket(sock, server_hostname=TLS_NAME):
            return True
    except (OSError, ValueError):
        return False


@contextlib.contextmanager
def _memfile(data: bytes) -> Iterator[str]:
    """A path to `data` that exists only in memory, for APIs that insist on a file name."""
    fd = os.memfd_create("rayctl-tls", os.MFD_CLOEXEC)
    try:
        os.write(fd, data)
        yield f"/proc/self/fd/{fd}"
    finally:
        os.close(fd)
