"""TLS for a cluster's channels: a cluster CA, and one node certificate under a fixed name.

Node addresses are not known when the head starts (clouds hand them out later), so the node
certificate names TLS_NAME, not an address, and every client verifies that name against the
cluster's CA rather than the address it dialled. The CA key signs the node certificate and is then
thrown away: nothing else can be issued for the cluster. The three files live in one directory
next to the token (`tls/`), 0600, and travel to nodes with it.

TLS keeps the path private and intact; who may talk is still decided by the token's proofs
(runtime/auth.py), which run inside it.
"""

from __future__ import annotations

import datetime
import functools
import os
import ssl
from dataclasses import dataclass

from runtime.private_state import ensure_private_dir, write_private_file

TLS_NAME = "rayctl-cluster"  # the name in every node certificate, and what clients verify
CA_FILE, CERT_FILE, KEY_FILE = "ca.crt", "node.crt", "node.key"
VALID_DAYS = 3650


@dataclass(eq=False)
class ClusterTls:
    """A cluster's TLS material (PEM) and the contexts made from it (made once: loading a CA
    costs about a millisecond)."""

    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes
    directory: str

    @functools.cached_property
    def server(self) -> ssl.SSLContext:
        return self.server_context()

    @functools.cached_property
    def client(self) -> ssl.SSLContext:
        return self.client_context()

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(os.path.join(self.directory, CERT_FILE),
                            os.path.join(self.directory, KEY_FILE))
        return ctx

    def client_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the chain and the name
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_verify_locations(cadata=self.ca_pem.decode())
        return ctx


def create_cluster_tls(directory: str) -> ClusterTls:
    """A new CA and node certificate for one cluster, written 0600 under `directory`."""
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
    ensure_private_dir(directory)
    write_private_file(os.path.join(directory, CA_FILE), ca_cert.public_bytes(pem).decode())
    write_private_file(os.path.join(directory, CERT_FILE), node_cert.public_bytes(pem).decode())
    write_private_file(os.path.join(directory, KEY_FILE), node_key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode())
    tls = load_cluster_tls(directory)
    assert tls is not None
    return tls


def load_cluster_tls(directory: str) -> ClusterTls | None:
    """The cluster's TLS material in `directory`, or None when the cluster runs without TLS."""
    try:
        with open(os.path.join(directory, CA_FILE), "rb") as ca, \
                open(os.path.join(directory, CERT_FILE), "rb") as cert, \
                open(os.path.join(directory, KEY_FILE), "rb") as key:
            return ClusterTls(ca.read(), cert.read(), key.read(), directory)
    except FileNotFoundError:
        return None


def tls_dir_for(token_file: str) -> str:
    """Where a cluster's TLS files are: beside its token file."""
    return os.path.join(os.path.dirname(os.path.abspath(token_file)), "tls")
