"""The sandbox's control plane: etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok.

Every listener is bound to 127.0.0.1 and every address a component is told to use is on loopback. The fake nodes
get only the InternalIP 127.0.0.1 (see kwok/stages.yaml), so the API server reaches kwok's kubelet port there for
logs and exec; pod IPs come from a loopback range and are data only.
"""

from __future__ import annotations

import http.client
import json
import ssl
from pathlib import Path

from . import config
from .agent import kubectl_exec
from .pki import Pki
from .processes import Component

POD_CIDR = "127.100.0.0/16"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
KWOK_CRDS = ("logs", "clusterlogs", "execs", "clusterexecs")


def http_get(port: int, path: str, *, tls: ssl.SSLContext | None) -> tuple[int, str]:
    conn: http.client.HTTPConnection
    if tls is None:
        conn = http.client.HTTPConnection(config.HOST, port, timeout=2)
    else:
        conn = http.client.HTTPSConnection(config.HOST, port, timeout=2, context=tls)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        conn.close()


def admin_tls(pki: Pki) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca_cert))
    context.load_cert_chain(str(pki.cert("admin")), str(pki.key("admin")))
    return context


def _unverified() -> ssl.SSLContext:
    """For health probes of components that serve a self-signed cert they made themselves (loopback only)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def write_kubeconfig(path: Path, pki: Pki) -> None:
    server = f"https://{config.HOST}:{config.PORTS.apiserver}"
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "hami-e2e-sandbox",
                      "cluster": {"server": server, "certificate-authority": str(pki.ca_cert)}}],
        "users": [{"name": "hami-e2e-admin",
                   "user": {"client-certificate": str(pki.cert("admin")), "client-key": str(pki.key("admin"))}}],
        "contexts": [{"name": "hami-e2e-sandbox",
                      "context": {"cluster": "hami-e2e-sandbox", "user": "hami-e2e-admin"}}],
        "current-context": "hami-e2e-sandbox",
    }
    path.write_text(json.dumps(kubeconfig, indent=2))
    path.chmod(0o600)


def scheduler_config(path: Path, kubeconfig: Path) -> None:
    path.write_text(
        "apiVersion: kubescheduler.config.k8s.io/v1\n"
        "kind: KubeSchedulerConfiguration\n"
        f"clientConnection:\n  kubeconfig: {kubeconfig}\n"
        "leaderElection:\n  leaderElect: false\n"
    )


def components(bin_dir: Path, run: Path, pki: Pki) -> list[Component]:
    """The control-plane components in start order."""
    ports = config.PORTS
    host = config.HOST
    kubeconfig = run / "kubeconfig"
    apiserver_tls = admin_tls(pki)
    secure_serving = [f"--bind-address={host}", f"--cert-dir={run / 'serving-certs'}",
                      f"--authentication-kubeconfig={kubeconfig}", f"--authorization-kubeconfig={kubeconfig}",
                      "--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics"]
    kwok_argv = [
        str(bin_dir / "kwok"), f"--kubeconfig={kubeconfig}", f"--config={config.STAGES_FILE}",
        "--manage-all-nodes=true", f"--node-ip={host}", "--node-name=localhost",
        f"--node-port={ports.kwok}", f"--server-address={host}:{ports.kwok}",
        f"--tls-cert-file={pki.cert('kwok')}", f"--tls-private-key-file={pki.key('kwok')}",
        f"--cidr={POD_CIDR}", "--node-lease-duration-seconds=40",
        "--enable-crds=Logs,ClusterLogs,Exec,ClusterExec"]
    return [
        Component(
            "etcd",
            [str(bin_dir / "etcd"), "--name=sandbox", f"--data-dir={run / 'etcd'}",
             f"--listen-client-urls=http://{host}:{ports.etcd_client}",
             f"--advertise-client-urls=http://{host}:{ports.etcd_client}",
             f"--listen-peer-urls=http://{host}:{ports.etcd_peer}",
             f"--initial-advertise-peer-urls=http://{host}:{ports.etcd_peer}",
             f"--initial-cluster=sandbox=http://{host}:{ports.etcd_peer}",
             "--initial-cluster-state=new", "--auto-compaction-retention=1", "--unsafe-no-fsync",
             "--log-level=warn"],
            [ports.etcd_client, ports.etcd_peer],
            lambda: http_get(ports.etcd_client, "/health", tls=None)[0] == 200,
        ),
        Component(
            "kube-apiserver",
            [str(bin_dir / "kube-apiserver"), f"--etcd-servers=http://{host}:{ports.etcd_client}",
             f"--bind-address={host}", f"--advertise-address={host}", f"--secure-port={ports.apiserver}",
             f"--tls-cert-file={pki.cert('apiserver')}", f"--tls-private-key-file={pki.key('apiserver')}",
             f"--client-ca-file={pki.ca_cert}",
             # published in kube-system/extension-apiserver-authentication; kube-schedulers in pods (HAMi's) read it
             f"--requestheader-client-ca-file={pki.ca_cert}", "--requestheader-username-headers=X-Remote-User",
             "--requestheader-group-headers=X-Remote-Group", "--requestheader-extra-headers-prefix=X-Remote-Extra-",
             "--requestheader-allowed-names=hami-e2e-front-proxy",   # no client has this name: no proxying
             f"--service-account-key-file={pki.sa_pub}", f"--service-account-signing-key-file={pki.sa_key}",
             f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
             f"--service-cluster-ip-range={config.service_cidr()}",
             "--authorization-mode=Node,RBAC", "--allow-privileged=true",
             # Endpoints may not hold loopback addresses, so the API server cannot publish its own (127.0.0.1) as
             # the `kubernetes` Service's endpoint; the node agent's proxy forwards that Service itself.
             "--endpoint-reconciler-type=none",
             "--kubelet-preferred-address-types=InternalIP",
             f"--kubelet-client-certificate={pki.cert('admin')}", f"--kubelet-client-key={pki.key('admin')}",
             "--profiling=false"],
            [ports.apiserver],
            lambda: http_get(ports.apiserver, "/readyz", tls=apiserver_tls)[0] == 200,
        ),
        Component(
            "kube-controller-manager",
            [str(bin_dir / "kube-controller-manager"), f"--kubeconfig={kubeconfig}",
             f"--secure-port={ports.controller_manager}", *secure_serving,
             "--leader-elect=false", f"--root-ca-file={pki.ca_cert}",
             f"--service-account-private-key-file={pki.sa_key}", "--use-service-account-credentials=false",
             "--profiling=false"],
            [ports.controller_manager],
            lambda: http_get(ports.controller_manager, "/healthz", tls=_unverified())[0] == 200,
        ),
        Component(
            "kube-scheduler",
            [str(bin_dir / "kube-scheduler"), f"--config={run / 'kube-scheduler.yaml'}",
             f"--secure-port={ports.scheduler}", *secure_serving, "--profiling=false"],
            [ports.scheduler],
            lambda: http_get(ports.scheduler, "/healthz", tls=_unverified())[0] == 200,
        ),
        Component(
            "kwok",
            kubectl_exec.kwok_launch(run, kwok_argv, config.STAGES_FILE.parent),
            [ports.kwok],
            lambda: http_get(ports.kwok, "/healthz", tls=_unverified())[0] == 200,
            exe=kwok_argv[0],
        ),
    ]
