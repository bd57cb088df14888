"""The webhook certificate generator of HAMi's chart (``kube-webhook-certgen create|patch``), played by the agent.

The image the chart names (``jettech/kube-webhook-certgen``, ``liangjw/kube-webhook-certgen``) is a Go program
whose module the Go module proxy does not serve, so the sandbox plays its documented contract itself, with the pod's
own service-account token (so the chart's RBAC for the hook is exercised):

- ``create --host=a,b --namespace=N --secret-name=S [--cert-name=cert] [--key-name=key]``: unless Secret S has
  data already, make a CA and a serving certificate for the hosts and store ``ca``, cert and key in S;
- ``patch --webhook-name=W --namespace=N --secret-name=S [--patch-mutating=true] [--patch-validating=true]
  [--patch-failure-policy=P]``: put S's ``ca`` into the ``caBundle`` of every webhook of W (get, then update).
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
from collections.abc import Callable
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from kubernetes import client
from kubernetes.client.exceptions import ApiException

VALIDITY = datetime.timedelta(days=365)


def parse_args(args: list[str]) -> tuple[str, dict[str, str]]:
    command = next((a for a in args if not a.startswith("-")), "")
    options = {}
    for arg in args:
        if arg.startswith("--"):
            key, _, value = arg[2:].partition("=")
            options[key] = value
    return command, options


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption())


def make_certificates(hosts: list[str]) -> tuple[bytes, bytes, bytes]:
    """A CA and a serving certificate for ``hosts`` (DNS names or IPs): (ca pem, cert pem, key pem)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "hami-e2e sandbox certgen")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + VALIDITY)
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + VALIDITY)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    return ca.public_bytes(pem), cert.public_bytes(pem), _pem_key(key)


def run(args: list[str], api: client.ApiClient, say: Callable[[str], None]) -> int:
    """Do what ``kube-webhook-certgen <args>`` does; returns its exit code."""
    command, options = parse_args(args)
    namespace, secret_name = options.get("namespace", "default"), options.get("secret-name", "")
    core = client.CoreV1Api(api)
    if command == "create":
        return _create(core, namespace, secret_name, options, say)
    if command == "patch":
        return _patch(core, client.AdmissionregistrationV1Api(api), namespace, secret_name, options, say)
    say(f"unknown command {command!r}: use create or patch")
    return 2


def _create(core: client.CoreV1Api, namespace: str, name: str, options: dict[str, str],
            say: Callable[[str], None]) -> int:
    try:
        existing = core.read_namespaced_secret(name, namespace)
        if existing.data:
            say(f"secret {namespace}/{name} already exists; nothing to do")
            return 0
    except ApiException as error:
        if error.status != 404:
            raise
    hosts = [h for h in options.get("host", "").split(",") if h]
    if not hosts:
        say("--host is required")
        return 2
    ca, cert, key = make_certificates(hosts)
    data = {"ca": ca, options.get("cert-name", "cert"): cert, options.get("key-name", "key"): key}
    body = client.V1Secret(metadata=client.V1ObjectMeta(name=name, namespace=namespace),
                           data={k: base64.b64encode(v).decode() for k, v in data.items()})
    core.create_namespaced_secret(namespace, body)
    say(f"created secret {namespace}/{name} for hosts {', '.join(hosts)}")
    return 0


def _patch(core: client.CoreV1Api, admission: client.AdmissionregistrationV1Api, namespace: str, name: str,
           options: dict[str, str], say: Callable[[str], None]) -> int:
    secret = core.read_namespaced_secret(name, namespace)
    ca_bundle = (secret.data or {}).get("ca")
    if not ca_bundle:
        say(f"secret {namespace}/{name} has no 'ca' key")
        return 1
    webhook = options.get("webhook-name", "")
    policy = options.get("patch-failure-policy", "")
    kinds: list[tuple[str, Callable[..., Any], Callable[..., Any]]] = []
    if options.get("patch-mutating", "true") != "false":
        kinds.append(("mutating", admission.read_mutating_webhook_configuration,
                      admission.replace_mutating_webhook_configuration))
    if options.get("patch-validating", "true") != "false":
        kinds.append(("validating", admission.read_validating_webhook_configuration,
                      admission.replace_validating_webhook_configuration))
    for kind, read, replace in kinds:
        # get + update, as the real tool does: the chart's ClusterRole grants exactly these two verbs
        config = read(webhook)
        for hook in config.webhooks or []:
            hook.client_config.ca_bundle = ca_bundle
            if policy:
                hook.failure_policy = policy
        replace(webhook, config)
        say(f"patched the caBundle of {len(config.webhooks or [])} {kind} webhook(s) in {webhook}")
    return 0
