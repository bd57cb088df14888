"""HAMi in the sandbox: its builds loaded as node images, its charts published, and install/uninstall for people.

``load_hami`` runs at ``python -m sandbox up``: it builds (or reuses) HAMi from the chosen source (``HAMI_SOURCE``,
default the 2.10.0 release archive) and the previous release (2.9.0, for the N-1 -> N upgrade test), registers each
build's image folder with the node agent (so pods of ``projecthami/hami:<VERSION>`` run for real) and publishes each
chart in the sandbox's chart repository. What was loaded, or why HAMi is not available, is written to
``<run>/hami.json``; the suite's target keyword reads it. The suite installs HAMi itself with helm, as a user does;
``python -m sandbox hami install`` does the same for people debugging.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from . import charts, config, node_images, topology
from .errors import SandboxError
from .gpu import Gpu, GpuSim, ensure_all, ensure_mocknvml, write_profile
from .hami.build import HamiBuild, ensure_build, place_libvgpu
from .hami.source import release_archive
from .progress import say

PREVIOUS_RELEASE = "2.9.0"
RELEASE = "hami"
NAMESPACE = "hami-system"
REPO_NAME = "hami-sandbox"


def info_file(run_dir: Path) -> Path:
    return run_dir / "hami.json"


def read_info(run_dir: Path) -> dict[str, Any]:
    """What ``load_hami`` recorded: ``available``, ``reason``, ``releases`` (current first), ``chart_repo``."""
    try:
        return json.loads(info_file(run_dir).read_text())
    except (OSError, ValueError):
        return {"available": False, "reason": "the sandbox is not running (python -m sandbox up)"}


def _release(build: HamiBuild, role: str) -> dict[str, Any]:
    image = build.image()
    return {"role": role, "version": build.version, "chart_version": build.version.lstrip("v"),
            "source": build.info.get("source", ""), "revision": build.info.get("revision", ""),
            "dirty": build.info.get("dirty", False), "images": image["references"], "build": str(build.root)}


def topology_of(run_dir: Path) -> topology.Topology:
    """The topology the running sandbox was started with (recorded at ``up``)."""
    return topology.load(Path((run_dir / "topology.path").read_text().strip()))


def node_dir(run_dir: Path, node: str) -> Path:
    return run_dir / "nodes" / node


def install_node_drivers(run_dir: Path, gpu_topology: topology.Topology, sim: GpuSim) -> None:
    """Give each fake node its simulated NVIDIA driver, as the NVIDIA container runtime would mount it into GPU
    containers: ``driver/`` (the mock ``libnvidia-ml.so.1``, our ``libcuda.so.1``) and ``nvml/`` with
    ``config.yaml`` (the node's GPUs from the topology; ``nvml-mock-ctl`` writes fault ``overrides.yaml`` beside it)
    and ``processes/`` where the node's GPU processes are listed (every container of the node sees them)."""
    for node in gpu_topology.nodes:
        base = node_dir(run_dir, node.name)
        driver = base / "driver"
        driver.mkdir(parents=True, exist_ok=True)
        for folder in (sim.mocknvml_dir, sim.libcuda_dir):
            for library in folder.iterdir():
                target = driver / library.name
                if not target.exists():
                    node_images.link_or_copy(library, target)
        gpus = [Gpu(index, gpu.uuid, gpu.model, gpu.memory_mib) for index, gpu in enumerate(node.gpus)]
        write_profile(base / "nvml" / "config.yaml", gpus, driver=node.driver, cuda=node.cuda)
        (base / "nvml").chmod(0o755)
        (base / "nvml" / "processes").mkdir(exist_ok=True)
        (base / "nvml" / "processes").chmod(0o1777)   # GPU containers run as an unprivileged user


def write_knobs(run_dir: Path) -> dict[str, Any]:
    """Fault knobs of the twin, read by the node agent: ``HAMI_E2E_HAMI_CORE=off`` runs GPU containers without
    HAMi-core (no ``/etc/ld.so.preload``), the fault proof of the limit tests."""
    knobs = {"hami_core": os.environ.get("HAMI_E2E_HAMI_CORE", "on").lower() not in ("off", "0", "false", "no")}
    (run_dir / "knobs.json").write_text(json.dumps(knobs))
    return knobs


def load_hami(run_dir: Path, helm: Path, gpu_topology: topology.Topology, source: str | None = None) -> dict[str, Any]:
    """Build and load HAMi (current source and the previous release) and the nodes' simulated GPU drivers; never
    raises for a missing source: ``hami.json`` then says why HAMi is not available."""
    started = time.monotonic()
    write_knobs(run_dir)
    try:
        sim = ensure_all()
        install_node_drivers(run_dir, gpu_topology, sim)
        builds = [(ensure_build(source), "current")]
    except SandboxError as error:
        info: dict[str, Any] = {"available": False, "reason": f"HAMi cannot be built: {error}"}
        info_file(run_dir).write_text(json.dumps(info, indent=2))
        say(f"HAMi not loaded: {error}")
        return info
    if release_archive(PREVIOUS_RELEASE).exists():
        builds.append((ensure_build(PREVIOUS_RELEASE), "previous"))
    catalog = node_images.catalog(run_dir)
    catalog.add(node_images.gpu_container_image(sim.nvidia_smi, sim.workload))
    for build, _ in builds:
        place_libvgpu(build, sim.libvgpu)   # HAMi's image carries HAMi-core, as its Dockerfile builds it
        image = build.image()
        catalog.add(node_images.hami_image(build.image_dir, image["references"], image.get("env", {}),
                                           f"HAMi {build.version} from {build.info.get('source', '?')}"))
    charts.publish(helm, [build.chart_dir for build, _ in builds], run_dir)
    info = {"available": True, "reason": "", "chart_repo": charts.url(), "repo_name": REPO_NAME,
            "port_offset": config.PORT_OFFSET,
            "releases": [_release(build, role) for build, role in builds]}
    info_file(run_dir).write_text(json.dumps(info, indent=2))
    say(f"HAMi loaded: {', '.join(r['version'] for r in info['releases'])} "
        f"(images on the nodes, charts at {charts.url()}) in {time.monotonic() - started:.1f}s")
    return info


def helm_env(run_dir: Path) -> dict[str, str]:
    """Keep the sandbox's helm repositories apart from the user's own helm configuration."""
    return {**os.environ, "KUBECONFIG": str(run_dir / "kubeconfig"),
            "HELM_REPOSITORY_CONFIG": str(run_dir / "helm" / "repositories.yaml"),
            "HELM_REPOSITORY_CACHE": str(run_dir / "helm" / "cache")}


def _helm(helm: Path, run_dir: Path, *args: str, timeout: float = 300) -> str:
    result = subprocess.run([str(helm), *args], capture_output=True, text=True, env=helm_env(run_dir),
                            timeout=timeout)
    if result.returncode != 0:
        raise SandboxError(f"helm {' '.join(args[:2])} failed: {(result.stderr or result.stdout).strip()[-800:]}")
    return result.stdout


def install(run_dir: Path, helm: Path, version: str | None = None) -> str:
    """``helm install`` of the loaded chart (default: the current source's version) from the sandbox repository."""
    info = read_info(run_dir)
    if not info.get("available"):
        raise SandboxError(info.get("reason") or "HAMi is not loaded in this sandbox")
    chart_version = version or info["releases"][0]["chart_version"]
    _helm(helm, run_dir, "repo", "add", REPO_NAME, info["chart_repo"], "--force-update")
    started = time.monotonic()
    _helm(helm, run_dir, "upgrade", "--install", RELEASE, f"{REPO_NAME}/hami", "--version", chart_version,
          "--namespace", NAMESPACE, "--create-namespace", "--wait", "--timeout", "5m")
    _wait_for_webhook(run_dir)
    return f"HAMi chart {chart_version} installed as release {RELEASE} in {NAMESPACE} in " \
           f"{time.monotonic() - started:.1f}s"


def _wait_for_webhook(run_dir: Path, timeout: float = 60.0) -> None:
    """Ready pods are not enough: until the Service routes to the scheduler the webhook fails open (policy Ignore)
    and a GPU pod bypasses HAMi. Wait until a dry-run GPU pod comes back with HAMi's scheduler name."""
    from kubernetes import client
    from kubernetes import config as kube_config

    api = client.CoreV1Api(kube_config.new_client_from_config(str(run_dir / "kubeconfig")))
    probe = {"metadata": {"generateName": "webhook-probe-"}, "spec": {"containers": [
        {"name": "probe", "image": "probe", "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if api.create_namespaced_pod("default", probe, dry_run="All").spec.scheduler_name == "hami-scheduler":
            return
        time.sleep(0.2)
    raise SandboxError(f"HAMi is installed but its webhook did not mutate a GPU pod within {timeout:.0f} s; see "
                       "the scheduler pod's log (python -m sandbox hami status)")


def uninstall(run_dir: Path, helm: Path) -> str:
    _helm(helm, run_dir, "uninstall", RELEASE, "--namespace", NAMESPACE, "--wait")
    return f"release {RELEASE} uninstalled from {NAMESPACE}"


def processes(run_dir: Path) -> list[dict[str, Any]]:
    """HAMi's (and every other real pod's) processes as the node agent reports them."""
    try:
        return json.loads((run_dir / "agent-status.json").read_text())["pods"]
    except (OSError, ValueError, KeyError):
        return []


def describe_status(run_dir: Path) -> str:
    info = read_info(run_dir)
    lines = []
    if info.get("available"):
        for release in info["releases"]:
            lines.append(f"{release['role']:<9} HAMi {release['version']} from {release['source']}")
        lines.append(f"charts: {info['chart_repo']}")
    else:
        lines.append(f"HAMi not available: {info.get('reason')}")
    for pod in processes(run_dir):
        for container in pod["containers"]:
            pid = container["pid"] or "not running"
            lines.append(f"{pod['pod']:<45} {container['name']:<26} pid {pid!s:<8} restarts {container['restarts']} "
                         f"log {container['log']}")
    return "\n".join(lines)



FAULT_MODES = ("lost", "fallen_off_bus", "ecc_uncorrectable")


def fail_gpu(run_dir: Path, node: str, gpu: str, mode: str, xid: int | None = None) -> str:
    """Make GPU ``gpu`` (UUID or the node's index) of ``node`` fail the way NVML reports it (``nvml-mock-ctl
    fail``): HAMi's device plugin on that node, and every container given that GPU, see it within about a second."""
    if mode not in FAULT_MODES:
        raise SandboxError(f"GPU fault mode {mode!r} is not one of {', '.join(FAULT_MODES)}")
    args = ["fail", "--gpu", gpu, "--mode", mode, *(["--xid", str(xid)] if xid is not None else [])]
    return _nvml_ctl(run_dir, node, args)


def heal_gpu(run_dir: Path, node: str, gpu: str = "all") -> str:
    """Undo injected faults (``nvml-mock-ctl reset``) of one GPU or all GPUs of ``node``."""
    return _nvml_ctl(run_dir, node, ["reset", "--gpu", gpu])


def _nvml_ctl(run_dir: Path, node: str, args: list[str]) -> str:
    nvml = node_dir(run_dir, node) / "nvml"
    if not (nvml / "config.yaml").exists():
        raise SandboxError(f"node {node} has no simulated GPU driver in {nvml}: is the sandbox up with HAMi loaded?")
    ctl = ensure_mocknvml().ctl
    result = subprocess.run([str(ctl), "--config", str(nvml / "config.yaml"), "--file", str(nvml / "overrides.yaml"),
                             *args], capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise SandboxError(f"nvml-mock-ctl {' '.join(args)} on {node} failed: {(result.stderr or result.stdout).strip()}")
    (nvml / "overrides.yaml").chmod(0o644)
    return result.stdout.strip()
