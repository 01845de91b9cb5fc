"""TLS material for Ray's side of a benchmark run with TLS (bench/multinode.py --tls): a CA and
one certificate for this machine's addresses, handed to Ray through its documented variables
(RAY_USE_TLS, RAY_TLS_SERVER_CERT, RAY_TLS_SERVER_KEY, RAY_TLS_CA_CERT). Ray verifies the
address it dials, so the certificate names this machine's IPs, unlike ours (runtime/tls.py)."""

from __future__ import annotations

import datetime
import ipaddress
import os
from pathlib import Path

import psutil


def ray_tls_env(directory: Path) -> dict[str, str]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    valid = (now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=1))
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(valid[0]).not_valid_after(valid[1])
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .sign(ca_key, hashes.SHA256()))
    ips = {a.address for addrs in psutil.net_if_addrs().values() for a in addrs
           if a.family.name == "AF_INET"} | {"127.0.0.1"}
    names = [x509.DNSName("localhost"), *(x509.IPAddress(ipaddress.ip_address(i)) for i in ips)]
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(valid[0]).not_valid_after(valid[1])
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    files = {
        "RAY_TLS_CA_CERT": ("ca.crt", ca.public_bytes(pem)),
        "RAY_TLS_SERVER_CERT": ("server.crt", cert.public_bytes(pem)),
        "RAY_TLS_SERVER_KEY": ("server.key", key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())),
    }
    env = {"RAY_USE_TLS": "1"}
    for var, (name, data) in files.items():
        path = directory / name
        path.write_bytes(data)
        os.chmod(path, 0o600)
        env[var] = str(path)
    return env
