"""Certificates for the sandbox: one CA, serving certs for 127.0.0.1, an admin client cert, a service-account key."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from . import config

VALIDITY = datetime.timedelta(days=30)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    parts = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        parts.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(parts)


def _builder(subject: x509.Name, issuer: x509.Name, public_key) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.timezone.utc)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + VALIDITY))


class Pki:
    """Creates and names the files in ``<run dir>/pki``."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.ca_cert = directory / "ca.crt"
        self.ca_key = directory / "ca.key"
        self.sa_key = directory / "sa.key"
        self.sa_pub = directory / "sa.pub"

    def cert(self, name: str) -> Path:
        return self.dir / f"{name}.crt"

    def key(self, name: str) -> Path:
        return self.dir / f"{name}.key"

    def create(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        ca_key = _key()
        ca_name = _name("hami-e2e-sandbox-ca")
        ca = (_builder(ca_name, ca_name, ca_key.public_key())
              .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
              .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                           content_commitment=False, key_encipherment=False,
                                           data_encipherment=False, key_agreement=False,
                                           encipher_only=False, decipher_only=False), critical=True)
              .sign(ca_key, hashes.SHA256()))
        self.ca_cert.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        _write_key(self.ca_key, ca_key)
        dns = ["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
               "kubernetes.default.svc.cluster.local"]
        # the ClusterIP of the `kubernetes` Service (first address of the loopback Service range): pods the node
        # agent runs reach the API server there, as in-cluster clients do.
        self._leaf("apiserver", _name("kube-apiserver"), ca, ca_key, server=True, dns=dns,
                   ips=["127.0.0.1", config.kubernetes_service_ip()])
        self._leaf("kwok", _name("kwok-kubelet"), ca, ca_key, server=True, dns=["localhost"])
        self._leaf("admin", _name("hami-e2e-admin", "system:masters"), ca, ca_key, server=False)
        sa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        _write_key(self.sa_key, sa)
        self.sa_pub.write_bytes(sa.public_key().public_bytes(serialization.Encoding.PEM,
                                                             serialization.PublicFormat.SubjectPublicKeyInfo))

    def _leaf(self, name: str, subject: x509.Name, ca: x509.Certificate, ca_key, *, server: bool,
              dns: list[str] | None = None, ips: tuple[str, ...] | list[str] = ("127.0.0.1",)) -> None:
        key = _key()
        builder = _builder(subject, ca.subject, key.public_key()).add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        if server:
            names: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
            names += [x509.DNSName(d) for d in dns or []]
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        self.cert(name).write_bytes(builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
        _write_key(self.key(name), key)
