"""Which system the run tests (the offline sandbox or a real cluster) and what the report records about it."""

from __future__ import annotations

import json
import os
import subprocess
from importlib import metadata
from pathlib import Path

from robot.api import logger
from robot.api.deco import keyword
from robot.libraries.BuiltIn import BuiltIn

from ..core.component import LibraryComponent
from ..core.context import Context

REPO = Path(__file__).resolve().parents[3]
#: The distributions the report's ``Libraries`` metadata names, with their versions.
REPORTED_DISTRIBUTIONS = (
    "robotframework",
    "robotframework-requests",
    "robotframework-kubelibrary",
    "requests",
    "kubernetes",
    "robotframework-pythonlibcore",
    "hami-e2e",
)
#: KubeLibrary's own switch: set, its import loads no kubeconfig and contacts no cluster (meant for libdoc).
KUBELIBRARY_OFFLINE = "INIT_FOR_LIBDOC_ONLY"


class TargetKeywords(LibraryComponent):
    """Keywords that prepare the target and write its description into the report's metadata."""

    def __init__(self, ctx: Context) -> None:
        """In a dry run, KubeLibrary is told not to connect (see `_kubelibrary_offline_in_dry_run`)."""
        super().__init__(ctx)
        _kubelibrary_offline_in_dry_run()

    @keyword(tags=("Target",))
    def prepare_target(self, target: str = "sandbox") -> None:
        """Make the target usable and point the library at it.

        | =Argument= | =Description= |
        | ``target`` | ``sandbox`` (default): start the offline sandbox unless it runs already (``python -m sandbox up``: on first use it builds its binaries, for several minutes, and says so on the console), then use its kubeconfig and helm. ``cluster``: keep the kubeconfig and context given to the library. |

        Fails with the sandbox's own error sentence when it cannot start. Use `Cluster Should Be Reachable`
        afterwards to check the API server answers.

        Example:
        | `Prepare Target` | ${TARGET} |
        """
        if target == "sandbox":
            self._start_sandbox()
        elif target == "cluster":
            self.ctx.connect(self.ctx.kubeconfig, self.ctx.kube_context)
        else:
            raise self.fail(f"unknown target {target!r}: use 'sandbox' or 'cluster' (variable TARGET)")

    def _start_sandbox(self) -> None:
        from sandbox import api  # imported only when the target is the sandbox
        from sandbox.errors import SandboxError

        logger.console("Starting the offline sandbox (python -m sandbox up) ...")
        try:
            connection = api.start(on_output=logger.info)
        except SandboxError as error:
            raise self.fail(str(error)) from None
        self.ctx.connect(str(connection.kubeconfig), None, str(connection.helm))
        self._use_sandbox_hami(connection.hami)

    def _use_sandbox_hami(self, info: dict) -> None:
        """What the sandbox loaded decides whether needs-hami tests run, and where its charts are served."""
        builtin = BuiltIn()
        builtin.set_global_variable("${HAMI_AVAILABLE}", bool(info.get("available")))
        builtin.set_global_variable("${HAMI_UNAVAILABLE_REASON}", info.get("reason") or "")
        if info.get("available"):
            builtin.set_global_variable("${HAMI_CHART_REPO_URL}", info["chart_repo"])
            # HAMi's metrics NodePorts, served on the nodes' loopback address (shifted with HAMI_E2E_PORT_OFFSET)
            for variable, node_port in (("${SCHEDULER_METRICS_URL}", 31993), ("${MONITOR_METRICS_URL}", 31992)):
                builtin.set_global_variable(
                    variable, f"http://127.0.0.1:{node_port + info.get('port_offset', 0)}/metrics"
                )
            self.ctx.sandbox_hami = info
        logger.info(f"HAMi in the sandbox: {json.dumps(info, indent=1)}")

    @keyword(tags=("Target", "KubeLibrary"))
    def get_target_kubeconfig(self) -> tuple[str, str | None]:
        """Returns the kubeconfig file and context (``None``: its current context) of the run's target, for
        libraries that connect on their own: ``resources/kube.resource`` imports KubeLibrary with them.

        The target is what `Prepare Target` chose: the sandbox's kubeconfig, or the ``kubeconfig`` and
        ``kube_context`` the library was imported with (``KUBECONFIG`` and ``KUBE_CONTEXT`` of the variable file;
        empty: ``$KUBECONFIG``, else ``~/.kube/config``). Fails, naming the file, when it does not exist.

        Example:
        | ${kubeconfig}    ${context} =    `Get Target Kubeconfig`
        | Import Library    KubeLibrary    kube_config=${kubeconfig}    context=${context}
        """
        if os.environ.get(KUBELIBRARY_OFFLINE, "0") == "1":
            raise self.fail(
                f"{KUBELIBRARY_OFFLINE}=1 is set in the environment, so KubeLibrary would be imported without a "
                "cluster and every one of its keywords would fail: unset it for a real run."
            )
        path, origin = _kubeconfig_path(self.ctx.kubeconfig)
        if not path.is_file():
            raise self.fail(
                f"The target's kubeconfig {path} ({origin}) does not exist, so KubeLibrary cannot connect. On the "
                "sandbox the root suite's setup (Prepare Target) starts it and points the library at its "
                "kubeconfig: run the suite from suites/, not a single file of it; for a cluster set KUBECONFIG "
                "(and KUBE_CONTEXT) in your variable file."
            )
        logger.info(f"Target kubeconfig: {path} ({origin}), context {self.ctx.kube_context or '(current)'}")
        return str(path), self.ctx.kube_context or None

    @keyword(tags=("Target",))
    def record_run_metadata(
        self, target: str, hami_chart_version: str = "", driver_version: str = "", cuda_version: str = ""
    ) -> dict[str, str]:
        """Write what was tested into the top-level suite's metadata (report.html shows it) and return it.

        Records: ``Target``, ``Kubernetes`` (server version), ``HAMi`` (the installed release's chart version, or
        why there is none), ``GPU models`` (per node, from node labels), ``Driver`` and ``CUDA`` (when given: they
        are not visible from the API), ``Suite revision`` (git commit of this suite, ``+dirty`` when changed) and
        ``Libraries`` (the versions of Robot Framework, RequestsLibrary, KubeLibrary, requests, the Kubernetes
        client, PythonLibCore and this suite's package).

        Example:
        | `Record Run Metadata` | ${TARGET} | ${HAMI_CHART_VERSION} | ${GPU_DRIVER_VERSION} | ${CUDA_VERSION} |
        """
        metadata = {
            "Target": self._describe_target(target),
            "Kubernetes": self.ctx.version_api.get_code().git_version,
            "HAMi": self._hami_release(hami_chart_version),
            "GPU models": self._gpu_models(),
            "Driver": driver_version or "unknown (not visible without a GPU node's nvidia-smi)",
            "CUDA": cuda_version or "unknown (not visible without a GPU node's nvidia-smi)",
            "Suite revision": _git_revision(),
            "Libraries": library_versions(),
        }
        builtin = BuiltIn()
        for name, value in metadata.items():
            builtin.set_suite_metadata(name, value, top=True)
        return metadata

    def _describe_target(self, target: str) -> str:
        if target == "sandbox":
            hami = self.ctx.sandbox_hami
            if not hami:
                return (
                    "sandbox (offline: real kube-apiserver/etcd/scheduler, kwok-simulated GPU nodes; no HAMi: "
                    f"{BuiltIn().get_variable_value('${HAMI_UNAVAILABLE_REASON}', '')})"
                )
            source = hami["releases"][0]
            gpus = (
                f"real GPUs: {hami['gpu_node'].get('gpus', 'those of this machine')}"
                if hami.get("gpu_node")
                else "kwok nodes, simulated GPUs"
            )
            kind = "GPU twin (real GPUs)" if hami.get("gpu_node") else "GPU twin"
            return (
                f"sandbox {kind} (offline: real kube-apiserver/etcd/scheduler; HAMi's real scheduler, webhook, "
                f"device plugin and HAMi-core from {source['source']}; {gpus})"
            )
        return f"cluster (kubeconfig context {self.ctx.kube_context or 'current'})"

    def _hami_release(self, expected_version: str) -> str:
        if self.ctx.sandbox_hami:  # what the sandbox built, and from which source: the run's HAMi under test
            loaded = self.ctx.sandbox_hami["releases"]
            return "; ".join(
                f"{r['role']} {r['version']} from {r['source']}"
                + (f" (revision {r['revision']}{', dirty' if r.get('dirty') else ''})" if r.get("revision") else "")
                for r in loaded
            )
        command = [
            self.ctx.helm_binary,
            *self.ctx.kube_args(),
            "list",
            "-n",
            self.ctx.hami.namespace,
            "-o",
            "json",
            "--filter",
            f"^{self.ctx.hami.release}$",
        ]
        result = self.ctx.runner(command, 60)
        if result.rc != 0:
            return f"unknown (helm list failed: {result.stderr.strip()[:200]})"
        releases = json.loads(result.stdout or "[]")
        if not releases:
            wanted = f" (expected chart {expected_version})" if expected_version else ""
            return f"not installed as release {self.ctx.hami.release} in {self.ctx.hami.namespace}{wanted}"
        release = releases[0]
        return f"{release['chart']} (app {release.get('app_version', '?')}, release {release['name']})"

    def _gpu_models(self) -> str:
        models = []
        for node in self.ctx.core.list_node().items:
            labels = node.metadata.labels or {}
            product = labels.get("nvidia.com/gpu.product")
            if product:
                models.append(f"{node.metadata.name}: {labels.get('nvidia.com/gpu.count', '?')} x {product}")
        return "; ".join(models) or "none labelled (no nvidia.com/gpu.product node label)"


def library_versions() -> str:
    """``robotframework 7.5, robotframework-requests 0.9.7, …``: what the run's keywords came from."""
    versions = []
    for name in REPORTED_DISTRIBUTIONS:
        try:
            versions.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{name} (not installed)")
    return ", ".join(versions)


def _kubeconfig_path(configured: str | None) -> tuple[Path, str]:
    """The kubeconfig the Kubernetes client would load, and where that choice came from."""
    if configured:
        return Path(configured).expanduser(), "the target's kubeconfig"
    from_env = [p for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    if from_env:
        return Path(from_env[0]).expanduser(), "the first file of $KUBECONFIG"
    return Path("~/.kube/config").expanduser(), "the default, as neither KUBECONFIG nor $KUBECONFIG names one"


def _kubelibrary_offline_in_dry_run() -> None:
    """``robot --dryrun`` executes ``Import Library`` (so that the keywords it brings can be checked), and
    KubeLibrary's constructor loads a kubeconfig and asks the API server for its resources. A dry run has no
    cluster: there KubeLibrary gets its own offline switch, so ``resources/kube.resource`` imports it anyway."""
    if BuiltIn().dry_run_active:
        os.environ[KUBELIBRARY_OFFLINE] = "1"


def _git_revision() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout.strip()

    revision = git("rev-parse", "--short=12", "HEAD") or "unknown"
    return revision + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else "")
