"""GPU-node mode of the twin: one node that is this machine, its real GPUs, HAMi on the real NVML.

    HAMI_E2E_GPU_NODE=1 python -m sandbox up        # or: python -m sandbox up --gpu-node

On a machine with NVIDIA GPUs (a lent GPU machine: ``tools/gpu-twin/run-on-device.sh`` does all of it) the sandbox
runs as usual — real control plane, kwok, the node agent, HAMi's chart with helm — but:

- the topology is generated from the real GPUs (``nvidia-smi --query-gpu``): one node named after the machine,
  its GPUs' UUIDs, model names and memory, the driver and CUDA versions (``write_topology``);
- no simulated driver: HAMi's device plugin and vGPU monitor open the host's ``libnvidia-ml.so.1`` with the host's
  ``/dev/nvidia*``, GPU containers get the real driver and only their allocated GPUs (``agent/host_driver.py``,
  described here in ``<run>/gpu-node.json``: ``describe_host``);
- HAMi-core is the ``libvgpu.so`` built on this machine against its driver (``HAMI_E2E_LIBVGPU``, e.g. by
  ``tools/gpu-host/build-hami-core.sh``), placed in HAMi's image as its Dockerfile does;
- GPU containers run the host's programs (the real ``nvidia-smi``), ``python3`` with PyTorch (``HAMI_E2E_GPU_PYTHON``,
  default the ``python3`` on PATH) and the CUDA C workload (``HAMI_E2E_GPU_WORKLOAD``: ``tools/workloads/
  gpu_workload.cu`` built with nvcc; its CLI is the host tier's: ``gpu-workload alloc <device> <MiB>``).

Only the current HAMi source is loaded (no 2.9.0 for the upgrade test). Needs root (device nodes, mounts).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import yaml

from . import charts, config, node_images, topology
from .agent.host_driver import HOST_FILE, gpu_node_enabled
from .agent.images import GPU_CONTAINER, Image
from .errors import SandboxError
from .hami.build import ensure_build, place_libvgpu
from .progress import say
from .twin import REPO_NAME, _release, info_file, write_knobs

LIBVGPU_ENV = "HAMI_E2E_LIBVGPU"
PYTHON_ENV = "HAMI_E2E_GPU_PYTHON"
WORKLOAD_ENV = "HAMI_E2E_GPU_WORKLOAD"
PROC_GPUS = Path("/proc/driver/nvidia/gpus")
CONTROL_DEVICES = ("/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools")
MODPROBE = ("/usr/bin/nvidia-modprobe", "/usr/sbin/nvidia-modprobe", "/usr/local/bin/nvidia-modprobe",
            "/usr/local/nvidia/bin/nvidia-modprobe", "/bin/nvidia-modprobe", "/sbin/nvidia-modprobe")
HOST_USR = ("/usr/bin", "/usr/lib", "/usr/lib64", "/usr/libexec", "/usr/sbin", "/usr/share")   # enter.py binds these
SPLIT_COUNT = 10

__all__ = ["describe_host", "enabled", "load_hami", "write_topology"]


def enabled() -> bool:
    return gpu_node_enabled()


def node_name() -> str:
    """The machine's host name as a Node name (DNS-1123: lower case, ``[a-z0-9-.]``)."""
    name = re.sub(r"[^a-z0-9.-]", "-", socket.gethostname().lower()).strip("-.")
    return name[:63] or "gpu-node"


def _nvidia_smi() -> str:
    found = shutil.which("nvidia-smi")
    if not found:
        raise SandboxError("GPU-node mode needs the NVIDIA driver's nvidia-smi on PATH (HAMI_E2E_GPU_NODE is set)")
    return found


def query_gpus() -> list[dict[str, str]]:
    """The machine's GPUs as nvidia-smi reports them (NVML order)."""
    fields = ("index", "uuid", "name", "memory.total", "driver_version", "pci.bus_id")
    result = subprocess.run([_nvidia_smi(), f"--query-gpu={','.join(fields)}", "--format=csv,noheader,nounits"],
                            capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise SandboxError(f"nvidia-smi --query-gpu failed: {(result.stderr or result.stdout).strip()[-400:]}")
    gpus = [dict(zip(fields, (part.strip() for part in line.split(",")), strict=False)) for line in result.stdout.splitlines()
            if line.strip()]
    if not gpus:
        raise SandboxError("nvidia-smi lists no GPU on this machine")
    return gpus


def cuda_version() -> str:
    """The driver's CUDA version (nvidia-smi's banner, e.g. ``13.0``)."""
    banner = subprocess.run([_nvidia_smi()], capture_output=True, text=True, timeout=60).stdout
    match = re.search(r"CUDA Version:\s*([0-9]+\.[0-9]+)", banner)
    return match.group(1) if match else "0.0"


def write_topology(path: Path | None = None) -> Path:
    """The topology of this machine as the twin's only node (``variables/sandbox_topology.yaml``'s format)."""
    gpus = query_gpus()
    path = path or config.cache_dir() / "gpu-node" / "topology.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") >> 30
    data = {
        "resourceName": "nvidia.com/gpu",
        "deviceSplitCount": SPLIT_COUNT,
        "driver": gpus[0]["driver_version"],
        "cuda": cuda_version(),
        "node": {"cpu": str(os.cpu_count() or 1), "memory": f"{memory_gib}Gi", "pods": "110"},
        "nodes": [{"name": node_name(), "labels": {"gpu": "on"},
                   "gpus": [{"uuid": gpu["uuid"], "model": gpu["name"], "memoryMiB": int(gpu["memory.total"])}
                            for gpu in gpus]}],
    }
    header = "# Generated by sandbox/gpu_node.py from nvidia-smi on this machine (GPU-node mode).\n"
    path.write_text(header + yaml.safe_dump(data, sort_keys=False))
    return path


def _proc_gpus() -> list[dict[str, Any]]:
    """Each GPU's PCI folder, device minor and UUID from ``/proc/driver/nvidia/gpus`` (PCI order = NVML order)."""
    if not PROC_GPUS.is_dir():
        raise SandboxError(f"{PROC_GPUS} does not exist: no NVIDIA driver is loaded on this machine")
    found = []
    for index, entry in enumerate(sorted(p for p in PROC_GPUS.iterdir() if p.is_dir())):
        fields = {}
        for line in (entry / "information").read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            fields[key.strip()] = value.strip()
        found.append({"uuid": fields.get("GPU UUID", ""), "index": index, "minor": int(fields["Device Minor"]),
                      "pci": entry.name})
    return found


def _library_dirs() -> list[str]:
    """The folders of the driver's ``libcuda.so.1`` and ``libnvidia-ml.so.1`` (ldconfig, else LD_LIBRARY_PATH and
    the usual driver folders)."""
    listing = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout
    usual = [*os.environ.get("LD_LIBRARY_PATH", "").split(":"), "/usr/local/nvidia/lib64", "/usr/lib/x86_64-linux-gnu",
             "/usr/lib64"]
    folders = []
    for library in ("libcuda.so.1", "libnvidia-ml.so.1"):
        match = re.search(rf"^\s*{re.escape(library)} \(libc6,x86-64[^)]*\) => (\S+)", listing, re.M)
        found = match.group(1) if match else next((os.path.join(d, library) for d in usual
                                                   if d and os.path.exists(os.path.join(d, library))), None)
        if found is None:
            raise SandboxError(f"{library} is neither known to ldconfig nor in {usual}: is the NVIDIA driver installed?")
        folders.append(os.path.dirname(os.path.realpath(found)))
    return list(dict.fromkeys(folders))


def _ensure_uvm() -> None:
    """Create ``/dev/nvidia-uvm`` when the driver has not yet (as the NVIDIA container runtime does before a start):
    inside a container ``nvidia-modprobe`` is masked, so CUDA could not create it there."""
    modprobe = shutil.which("nvidia-modprobe")
    if not os.path.exists("/dev/nvidia-uvm") and modprobe:
        subprocess.run([modprobe, "-u", "-c", "0"], capture_output=True, timeout=30)


def _python() -> dict[str, Any]:
    """The interpreter with PyTorch that GPU containers run as ``python3``: its path and the folders it needs."""
    python = os.environ.get(PYTHON_ENV) or shutil.which("python3") or "python3"
    probe = ("import json, sys, torch; print(json.dumps({'executable': sys.executable, 'prefix': sys.prefix, "
             "'base_prefix': sys.base_prefix, 'torch': torch.__version__, 'path': sys.path}))")
    result = subprocess.run([python, "-c", probe], capture_output=True, text=True, timeout=120,
                            env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    if result.returncode != 0:
        raise SandboxError(f"{python} cannot import torch ({result.stderr.strip()[-300:]}); set {PYTHON_ENV} to a "
                           "python3 with PyTorch")
    info = json.loads(result.stdout.strip().splitlines()[-1])
    info["python"] = python
    return info


def _outside_usr(paths: list[str]) -> list[str]:
    """Top folders of ``paths`` that enter.py does not already give every container (the host's /usr folders);
    a prefix that is ``/usr/local`` gives only its ``lib`` (the image's ``/usr/local/bin`` stays visible)."""
    kept: list[str] = []
    for path in paths:
        real = os.path.realpath(path)
        if real == "/usr/local":
            real = "/usr/local/lib"
        if not os.path.exists(real) or real in ("/", "/usr") or \
                any(real == usr or real.startswith(usr + "/") for usr in HOST_USR):
            continue
        if not any(real == other or real.startswith(other + "/") for other in kept):
            kept = [other for other in kept if not other.startswith(real + "/")] + [real]
    return kept


def describe_host(run_dir: Path, node: str) -> dict[str, Any]:
    """Write ``<run>/gpu-node.json`` (read by the node agent: ``agent/host_driver.py``) and return it."""
    libraries = _library_dirs()
    python = _python()
    _ensure_uvm()
    site = [p for p in python["path"] if p.endswith(("site-packages", "dist-packages"))]
    description = {
        "node": node,
        "gpus": _proc_gpus(),
        "control_devices": [path for path in CONTROL_DEVICES if os.path.exists(path)],
        "binds": _outside_usr([*libraries, python["prefix"], python["base_prefix"], *site,
                               os.path.realpath(python["executable"])]),
        "masked": [path for path in MODPROBE if os.path.isfile(path)],
        "env": {"LD_LIBRARY_PATH": ":".join(libraries)},
        "python": {key: python[key] for key in ("python", "executable", "prefix", "base_prefix", "torch")},
    }
    (run_dir / HOST_FILE).write_text(json.dumps(description, indent=1))
    return description


def gpu_container_image(python: str, workload: Path | None) -> Image:
    """The root of every HAMi-allocated container on real GPUs: the host's programs (enter.py binds the host's /usr),
    and in ``/usr/local/bin`` the real ``nvidia-smi``, ``python3`` (the PyTorch interpreter) and ``gpu-workload``."""
    smi = os.path.realpath(_nvidia_smi())
    digest = hashlib.sha256(f"{smi}:{python}:{workload}".encode()).hexdigest()[:12]
    root = config.cache_dir() / "images" / f"gpu-container-host-{digest}"
    bin_dir = root / "usr" / "local" / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    node_images.link_or_copy(Path(smi), bin_dir / "nvidia-smi")
    wrapper = bin_dir / "python3"
    wrapper.write_text(f'#!/bin/sh\nexec {python} "$@"\n')
    wrapper.chmod(0o755)
    if workload is not None:
        node_images.link_or_copy(workload, bin_dir / "gpu-workload")
    return Image(refs=(GPU_CONTAINER,), root=str(root),
                 env={"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
                 description="GPU container on real GPUs: host programs, nvidia-smi, python3 with PyTorch, "
                             "gpu-workload (CUDA C)")


def load_hami(run_dir: Path, helm: Path, gpu_topology: topology.Topology, source: str | None = None) -> dict[str, Any]:
    """``twin.load_hami`` for the real node: HAMi's build with this machine's HAMi-core, the real driver described
    for the agent, the GPU container image; never raises: ``hami.json`` then says why HAMi is not available."""
    started = time.monotonic()
    write_knobs(run_dir)
    try:
        if len(gpu_topology.nodes) != 1:
            raise SandboxError("GPU-node mode runs one node (this machine); the topology names "
                               f"{len(gpu_topology.nodes)}")
        host = describe_host(run_dir, gpu_topology.nodes[0].name)
        libvgpu = Path(os.environ.get(LIBVGPU_ENV, ""))
        if not libvgpu.is_file():
            raise SandboxError(f"{LIBVGPU_ENV} must name HAMi-core's libvgpu.so built on this machine (e.g. "
                               "tools/gpu-host/build-hami-core.sh ARCHIVE OUTDIR)")
        build = ensure_build(source)
    except SandboxError as error:
        info = {"available": False, "reason": f"HAMi cannot be loaded on the GPU node: {error}"}
        info_file(run_dir).write_text(json.dumps(info, indent=2))
        say(f"HAMi not loaded: {error}")
        return info
    workload = Path(os.environ[WORKLOAD_ENV]) if os.environ.get(WORKLOAD_ENV) else None
    catalog = node_images.catalog(run_dir)
    catalog.add(gpu_container_image(host["python"]["python"], workload))
    place_libvgpu(build, libvgpu)
    image = build.image()
    catalog.add(node_images.hami_image(build.image_dir, image["references"], image.get("env", {}),
                                       f"HAMi {build.version} from {build.info.get('source', '?')}"))
    charts.publish(helm, [build.chart_dir], run_dir)
    gpus = ", ".join(f"{gpu.model} {gpu.uuid}" for gpu in gpu_topology.nodes[0].gpus)
    info = {"available": True, "reason": "", "chart_repo": charts.url(), "repo_name": REPO_NAME,
            "port_offset": config.PORT_OFFSET, "releases": [_release(build, "current")],
            "gpu_node": {"node": gpu_topology.nodes[0].name, "gpus": gpus, "libvgpu": str(libvgpu),
                         "python": host["python"], "driver": gpu_topology.nodes[0].driver,
                         "cuda": gpu_topology.nodes[0].cuda}}
    info_file(run_dir).write_text(json.dumps(info, indent=2))
    say(f"HAMi loaded on the GPU node {gpu_topology.nodes[0].name} ({gpus}): {build.version}, HAMi-core {libvgpu} "
        f"in {time.monotonic() - started:.1f}s")
    return info
