"""The run's preflight checks: is the target what the variables say, before any test touches it?

Each check reads (never writes) and either returns a line for the log or raises `PreflightFailure` with one
sentence that names the cause and the file or variable to fix. `Verdict` is what the run keeps of them.
No Robot Framework here; the keyword `Run Preflight` (``keywords/run_control.py``) gathers the inputs.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..parsers.annotations import AnnotationFormatError, parse_node_register
from .commands import run_command
from .describe import api_error_text

#: What the example variable file marks every value with that must be changed.
PLACEHOLDER = "CHANGE-ME"
#: The oldest helm the suite works with (release labels, ``list --selector``, helm 4's status listing).
MIN_HELM = (3, 14)
#: Connect and read timeouts of the preflight's API requests (seconds), without retries.
API_TIMEOUT = (3.0, 5.0)


class PreflightFailure(Exception):
    """A preflight check failed; the message is the verdict: the cause and what to fix."""


@dataclass
class Verdict:
    """The run's preflight result. ``cause`` is the failure sentence; ``checks`` what passed; ``removed`` the
    leftovers of earlier runs removed; ``reported_by`` the test that reported a failed verdict."""

    passed: bool
    cause: str = ""
    checks: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    seconds: float = 0.0
    reported_by: str | None = None


# ------------------------------------------------------------------------------------------ variables


def variable_files(argv: Iterable[str]) -> list[str]:
    """The ``--variablefile``/``-V`` arguments of a robot command line (``path[:args]``: the path)."""
    files, items = [], list(argv)
    for index, item in enumerate(items):
        value = None
        if item in ("-V", "--variablefile") and index + 1 < len(items):
            value = items[index + 1]
        elif item.startswith("--variablefile="):
            value = item.split("=", 1)[1]
        if value:
            files.append(re.sub(r":[^/\\]*$", "", value) if not os.path.exists(value) else value)
    return files


def _has_placeholder(value: Any) -> bool:
    if isinstance(value, str):
        return PLACEHOLDER in value
    if isinstance(value, dict):
        return any(_has_placeholder(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_has_placeholder(v) for v in value)
    return False


def check_placeholders(variables: dict[str, Any], files: list[str]) -> str:
    """Fails when a variable still holds ``CHANGE-ME`` (the example file's mark), naming every such key."""
    keys = sorted(name for name, value in variables.items() if _has_placeholder(value))
    if keys:
        if len(files) == 1:
            where = f"The variable file {files[0]} still has"
        else:
            where = f"The variable files {', '.join(files)} still have" if files else "The variables still have"
        raise PreflightFailure(
            f"{where} {PLACEHOLDER} placeholders in {', '.join(keys)}: set them to your cluster's values (the "
            "CHANGE comments of variables/cluster.example.yaml say what each one is)."
        )
    return f"no {PLACEHOLDER} placeholder in the variables"


def check_vendor(vendor: str, vendors_dir: Path) -> str:
    """Fails unless ``vendors_dir`` has ``<vendor>.yaml`` (the resource names of that vendor)."""
    known = sorted(p.stem for p in vendors_dir.glob("*.yaml"))
    if vendor not in known:
        raise PreflightFailure(
            f"VENDOR {vendor!r} is unknown: the suite has resource names for {', '.join(known) or 'no vendor'} "
            f"({vendors_dir}/<vendor>.yaml); set VENDOR to one of them."
        )
    return f"vendor {vendor}"


# ------------------------------------------------------------------------------------------ kubeconfig


@dataclass(frozen=True)
class KubeTarget:
    """The kubeconfig file(s), the context, and where they came from (for the messages)."""

    files: list[str]
    where: str  # "variable KUBECONFIG", "environment variable KUBECONFIG", "the default", "the sandbox"
    context: str
    cluster: str
    server: str
    user: str

    def describe(self) -> str:
        return f"context {self.context} of kubeconfig {', '.join(self.files)} ({self.where})"


def kubeconfig_files(variable: str, source: str = "variable KUBECONFIG") -> tuple[list[str], str]:
    """The kubeconfig file(s) the Kubernetes client reads: the variable's, else ``$KUBECONFIG``'s (a list), else
    ``~/.kube/config``; and a phrase naming that source."""
    if variable:
        return [os.path.expanduser(variable)], source
    env = os.environ.get("KUBECONFIG", "")
    if env:
        return [p for p in env.split(os.pathsep) if p], "environment variable KUBECONFIG, variable KUBECONFIG empty"
    return [os.path.expanduser("~/.kube/config")], "the default, variable KUBECONFIG empty"


def check_kubeconfig(files: list[str], where: str, context: str, context_variable: str = "KUBE_CONTEXT") -> KubeTarget:
    """Fails unless the file(s) exist, read as a kubeconfig, and have the context (``context`` or the current one)
    with its cluster and user. Returns what the context points at."""
    merged: dict[str, list[dict[str, Any]]] = {"contexts": [], "clusters": [], "users": []}
    current = ""
    for path in files:
        if not os.path.exists(path):
            raise PreflightFailure(f"The kubeconfig file {path} ({where}) does not exist.")
        try:
            text = Path(path).read_text()
        except (OSError, UnicodeDecodeError) as error:
            raise PreflightFailure(
                f"The kubeconfig file {path} ({where}) cannot be read: {_os_error(error)}."
            ) from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise PreflightFailure(
                f"The kubeconfig file {path} ({where}) is not YAML: {str(error).splitlines()[0]}."
            ) from None
        if not isinstance(data, dict) or not data.get("clusters") or not data.get("contexts"):
            raise PreflightFailure(
                f"The kubeconfig file {path} ({where}) is not a kubeconfig: it has no clusters or no contexts."
            )
        for key in merged:
            merged[key] += [item for item in data.get(key) or [] if isinstance(item, dict)]
        current = current or str(data.get("current-context") or "")
    names = [str(c.get("name")) for c in merged["contexts"]]
    shown = ", ".join(files)
    if context and context not in names:
        raise PreflightFailure(
            f"The context {context!r} ({context_variable}) is not in kubeconfig {shown} ({where}); it has: "
            f"{', '.join(names)}."
        )
    chosen = context or current
    if not chosen:
        raise PreflightFailure(
            f"Kubeconfig {shown} ({where}) has no current-context and {context_variable} is empty: set "
            f"{context_variable} to one of {', '.join(names)}."
        )
    if chosen not in names:
        raise PreflightFailure(
            f"The current-context {chosen!r} of kubeconfig {shown} ({where}) is not one of its contexts "
            f"({', '.join(names)}): set {context_variable}."
        )
    entry = next(c for c in merged["contexts"] if c.get("name") == chosen).get("context") or {}
    cluster_name, user = str(entry.get("cluster") or ""), str(entry.get("user") or "")
    cluster = next((c.get("cluster") or {} for c in merged["clusters"] if c.get("name") == cluster_name), None)
    if cluster is None:
        raise PreflightFailure(
            f"Context {chosen} of kubeconfig {shown} ({where}) names cluster {cluster_name!r}, which the file does "
            "not define."
        )
    if user and not any(u.get("name") == user for u in merged["users"]):
        raise PreflightFailure(
            f"Context {chosen} of kubeconfig {shown} ({where}) names user {user!r}, which the file does not define."
        )
    return KubeTarget(files, where, chosen, cluster_name, str(cluster.get("server") or ""), user or "(none)")


def _os_error(error: Exception) -> str:
    return error.strerror if isinstance(error, OSError) and error.strerror else str(error)


# ------------------------------------------------------------------------------------------ API server


def api_client(target: KubeTarget) -> Any:
    """A Kubernetes ApiClient for ``target`` that never retries (the preflight answers within seconds)."""
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    cfg = client.Configuration()
    try:
        config.load_kube_config(
            config_file=os.pathsep.join(target.files), context=target.context, client_configuration=cfg
        )
    except (ConfigException, OSError, ValueError, TypeError) as error:
        raise PreflightFailure(f"The {target.describe()} cannot be used: {error}.") from None
    cfg.retries = False
    return client.ApiClient(cfg)


def check_api_server(target: KubeTarget, api: Any) -> str:
    """Fails unless the API server answers and takes the credentials (it lists nodes); returns its version."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    server = f"The API server {target.server} ({target.describe()})"
    try:
        version = client.VersionApi(api).get_code(_request_timeout=API_TIMEOUT).git_version
        client.CoreV1Api(api).list_node(limit=1, _request_timeout=API_TIMEOUT)
    except ApiException as error:
        if error.status == 401:
            raise PreflightFailure(
                f"{server} refused the credentials of user {target.user}: {api_error_text(error)}."
            ) from None
        if error.status == 403:
            raise PreflightFailure(
                f"{server} does not let user {target.user} list nodes ({api_error_text(error)}); the suite needs "
                "rights to nodes, namespaces, pods and HAMi's objects."
            ) from None
        raise PreflightFailure(f"{server} answered {api_error_text(error)}.") from None
    except (HTTPError, OSError) as error:  # connection refused, timeout, TLS, DNS: all "unreachable"
        raise PreflightFailure(f"{server} is unreachable: {_connection_error(error)}.") from None
    return f"Kubernetes {version} at {target.server} ({target.describe()})"


def _connection_error(error: BaseException) -> str:
    """The innermost reason of a urllib3 error: ``connection refused``, ``timed out``, a TLS error …"""
    reason: BaseException = error
    while getattr(reason, "reason", None) is not None and isinstance(reason.reason, BaseException):  # type: ignore[attr-defined]
        reason = reason.reason  # type: ignore[attr-defined]
    text = str(reason)
    for marker, plain in (
        ("Connection refused", "connection refused"),
        ("timed out", "timed out"),
        ("Name or service not known", "the host name does not resolve"),
        ("CERTIFICATE_VERIFY_FAILED", "its TLS certificate is not trusted (certificate-authority)"),
    ):
        if marker in text:
            return plain
    return text.split(": ", 1)[-1] if "object at 0x" in text else text


# ------------------------------------------------------------------------------------------ helm


def check_helm(helm: str, where: str) -> str:
    """Fails unless ``helm version`` runs and reports at least `MIN_HELM`; returns the version."""
    result = run_command([helm, "version", "--short"], 10)
    if result.rc == 127:
        raise PreflightFailure(
            f"helm is missing: {helm!r} ({where}) was not found; install helm "
            f"{MIN_HELM[0]}.{MIN_HELM[1]}+ or set HELM_BINARY to its path."
        )
    if result.rc != 0:
        raise PreflightFailure(
            f"helm {helm!r} ({where}) does not run (rc={result.rc}): {(result.stderr or result.stdout).strip()[-300:]}."
        )
    match = re.search(r"v(\d+)\.(\d+)\.(\d+)", result.stdout)
    if not match:
        raise PreflightFailure(f"helm {helm!r} ({where}) printed no version: {result.stdout.strip()[:200]!r}.")
    if (int(match[1]), int(match[2])) < MIN_HELM:
        raise PreflightFailure(
            f"helm {match[0]} ({helm}, {where}) is too old: the suite needs helm {MIN_HELM[0]}.{MIN_HELM[1]} or newer."
        )
    return f"helm {match[0]} ({helm})"


@dataclass(frozen=True)
class ChartSource:
    """The chart to install as the variables give it."""

    chart: str  # HAMI_CHART
    version: str  # HAMI_CHART_VERSION
    repo_name: str  # HAMI_CHART_REPO_NAME ("" for OCI or local charts)
    repo_url: str  # HAMI_CHART_REPO_URL


def check_chart(helm: str, source: ChartSource, helm_env_args: list[str] | None = None) -> str:
    """Fails unless the chart exists in the pinned version: a local chart (its Chart.yaml version), an OCI chart
    (``helm show chart``) or a repository chart (``helm repo add``, then the repository's index)."""
    args = list(helm_env_args or [])
    pinned = f"{source.chart} version {source.version} (HAMI_CHART, HAMI_CHART_VERSION)"
    if source.chart.startswith("oci://"):
        result = run_command([helm, "show", "chart", source.chart, "--version", source.version, *args], 30)
        if result.rc != 0:
            raise PreflightFailure(f"Chart {pinned} is not available: {_helm_error(result.stderr)}.")
        return f"chart {source.chart} {source.version}"
    if source.chart.startswith((".", "/", "~")) or os.path.exists(source.chart):
        return _check_local_chart(helm, source, args)
    if source.repo_name:
        added = run_command([helm, "repo", "add", source.repo_name, source.repo_url, "--force-update", *args], 30)
        if added.rc != 0:
            raise PreflightFailure(
                f"The chart repository {source.repo_url} (HAMI_CHART_REPO_URL, named {source.repo_name} by "
                f"HAMI_CHART_REPO_NAME) cannot be read: {_helm_error(added.stderr)}."
            )
    found = run_command([helm, "search", "repo", source.chart, "--version", source.version, "-o", "json", *args], 30)
    if found.rc != 0:
        raise PreflightFailure(f"Chart {pinned} cannot be looked up: {_helm_error(found.stderr)}.")
    rows = yaml.safe_load(found.stdout or "[]") or []
    if not any(r.get("name") == source.chart and str(r.get("version")) == source.version for r in rows):
        versions = run_command([helm, "search", "repo", source.chart, "--versions", "-o", "json", *args], 30)
        known = [
            str(r.get("version"))
            for r in yaml.safe_load(versions.stdout or "[]") or []
            if r.get("name") == source.chart
        ]
        where = f" in repository {source.repo_url}" if source.repo_name else ""
        raise PreflightFailure(
            f"Chart {pinned} is not found{where}: "
            + (f"it has versions {', '.join(known[:8])}." if known else f"there is no chart {source.chart}.")
        )
    return f"chart {source.chart} {source.version}" + (f" from {source.repo_url}" if source.repo_name else "")


def _check_local_chart(helm: str, source: ChartSource, args: list[str]) -> str:
    path = os.path.expanduser(source.chart)
    if not os.path.exists(path):
        raise PreflightFailure(f"The chart {path} (HAMI_CHART) does not exist.")
    shown = run_command([helm, "show", "chart", path, *args], 30)
    if shown.rc != 0:
        raise PreflightFailure(f"The chart {path} (HAMI_CHART) cannot be read: {_helm_error(shown.stderr)}.")
    version = str((yaml.safe_load(shown.stdout) or {}).get("version", ""))
    if source.version and version != source.version:
        raise PreflightFailure(
            f"The chart {path} (HAMI_CHART) is version {version}, but HAMI_CHART_VERSION says {source.version}."
        )
    return f"chart {path} {version}"


def _helm_error(stderr: str) -> str:
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    return (lines[-1] if lines else "no error text").removeprefix("Error: ")


# ------------------------------------------------------------------------------------------ GPU nodes


@dataclass(frozen=True)
class Inventory:
    """The GPU inventory the variables describe."""

    nodes: list[str]  # GPU_NODES
    label: str  # GPU_NODE_LABEL
    gpus_per_node: int  # GPUS_PER_NODE
    model: str  # GPU_MODEL
    memory_mib: int  # GPU_MEMORY_MIB
    register_annotation: str = "hami.io/node-nvidia-register"


def check_gpu_nodes(core: Any, inventory: Inventory) -> list[Any]:
    """Fails unless every node of GPU_NODES exists, carries GPU_NODE_LABEL and is Ready; returns those nodes."""
    if not inventory.nodes:
        raise PreflightFailure("GPU_NODES is empty: list the GPU nodes of the cluster.")
    everything = {n.metadata.name: n for n in core.list_node(_request_timeout=API_TIMEOUT).items}
    key, _, value = inventory.label.partition("=")
    absent = [n for n in inventory.nodes if n not in everything]
    unlabelled = [
        n for n in inventory.nodes if n in everything and (everything[n].metadata.labels or {}).get(key) != value
    ]
    if absent or unlabelled:
        labelled = sorted(n for n, obj in everything.items() if (obj.metadata.labels or {}).get(key) == value)
        problems = []
        if absent:
            problems.append(f"{', '.join(absent)} {'is' if len(absent) == 1 else 'are'} not in the cluster")
        if unlabelled:
            problems.append(
                f"{', '.join(unlabelled)} {'lacks' if len(unlabelled) == 1 else 'lack'} the label "
                f"{inventory.label} (GPU_NODE_LABEL)"
            )
        raise PreflightFailure(
            f"GPU nodes of GPU_NODES: {'; '.join(problems)}. Nodes labelled {inventory.label}: "
            f"{', '.join(labelled) or 'none'}."
        )
    not_ready = []
    for name in inventory.nodes:
        ready = next((c for c in everything[name].status.conditions or [] if c.type == "Ready"), None)
        if ready is None or ready.status != "True":
            state = f"Ready={ready.status}: {ready.reason}, {ready.message}" if ready else "no Ready condition"
            not_ready.append(f"{name} ({state})")
    if not_ready:
        raise PreflightFailure(f"GPU node(s) of GPU_NODES not Ready: {'; '.join(not_ready)}.")
    return [everything[n] for n in inventory.nodes]


def check_registration(nodes: list[Any], inventory: Inventory) -> str:
    """Fails when HAMi registered GPUs on a node that differ from GPUS_PER_NODE, GPU_MODEL or GPU_MEMORY_MIB.
    Nodes HAMi has not registered yet (it is installed later) are not checked."""
    problems, registered = [], 0
    for node in nodes:
        try:
            devices = parse_node_register((node.metadata.annotations or {}).get(inventory.register_annotation))
        except AnnotationFormatError:
            continue
        if not devices:
            continue
        registered += 1
        name = node.metadata.name
        if len(devices) != inventory.gpus_per_node:
            problems.append(f"{name} has {len(devices)} GPU(s), GPUS_PER_NODE says {inventory.gpus_per_node}")
        models = sorted({d.type for d in devices})
        if any(inventory.model not in (d.type, d.model, f"NVIDIA-{inventory.model}") for d in devices):
            problems.append(f"{name} has {', '.join(models)}, GPU_MODEL says {inventory.model!r}")
        memories = sorted({d.devmem for d in devices})
        if memories != [inventory.memory_mib]:
            problems.append(
                f"{name} has {', '.join(map(str, memories))} MiB per GPU, GPU_MEMORY_MIB says {inventory.memory_mib}"
            )
    if problems:
        raise PreflightFailure(
            f"The GPUs HAMi registered ({inventory.register_annotation}) differ from the variables: "
            f"{'; '.join(problems)}."
        )
    if not registered:
        return "GPU model and memory: HAMi has registered no GPU yet (checked after the install)"
    return f"GPU model and memory as HAMi registered them on {registered} node(s)"
