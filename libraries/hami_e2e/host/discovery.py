"""Finding out what the GPU host has: its GPUs and driver (plain nvidia-smi), whether container views can be built,
which workload runs (PyTorch, CuPy or our CUDA C program built with nvcc), and the commands that run it."""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from datetime import timedelta
from pathlib import Path

from robot.api import SkipExecution, logger

from ..core.errors import HamiE2EFailure
from ..parsers.nvidia_smi import DEFAULT_QUERY_FIELDS, parse_nvidia_smi_report
from .processes import WORKLOADS_DIR, plain_env, run
from .state import HostGpu, HostSetup

PYTHON_WORKLOAD = WORKLOADS_DIR / "gpu_workload.py"
CUDA_C_WORKLOAD = WORKLOADS_DIR / "gpu_workload.cu"
PROC_GPUS = Path("/proc/driver/nvidia/gpus")
HOST_QUERY = (*DEFAULT_QUERY_FIELDS, "pci.bus_id")

NVIDIA_SMI_FORMATS = {
    "table": [],
    "csv": [f"--query-gpu={','.join(DEFAULT_QUERY_FIELDS)}", "--format=csv"],
    "csv-noheader": [f"--query-gpu={','.join(DEFAULT_QUERY_FIELDS)}", "--format=csv,noheader,nounits"],
    "query": ["-q"],
    "query-memory": ["-q", "-d", "MEMORY"],
    "list": ["-L"],
}


def host_gpus(nvidia_smi: str, table_output: str, timeout: timedelta) -> tuple[list[HostGpu], str, str]:
    """The host's GPUs (index, UUID, model, memory, PCI bus) plus driver and CUDA versions from plain nvidia-smi
    (``table_output`` is its default table)."""
    try:
        table = parse_nvidia_smi_report(table_output)
    except ValueError as error:
        raise HamiE2EFailure(f"nvidia-smi on this host could not be parsed: {error}") from None
    query = run([nvidia_smi, f"--query-gpu={','.join(HOST_QUERY)}", "--format=csv"], plain_env(), timeout)
    if query.returncode != 0:
        raise HamiE2EFailure(f"nvidia-smi --query-gpu failed (exit {query.returncode}):\n{query.stdout}")
    listed = parse_nvidia_smi_report(query.stdout).gpus
    gpus = [
        HostGpu(g.index, g.uuid or "", g.name or "unknown", g.memory_total_mib or 0, g.bus_id or "") for g in listed
    ]
    return gpus, table.driver_version or "unknown", table.cuda_version or "unknown"


def isolation_problem() -> str:
    """Why container views of some GPUs cannot be built here, or "" when they can (root, NVIDIA driver)."""
    if os.geteuid() != 0:
        return "not available: needs root for a private mount namespace (run robot as root)"
    if not PROC_GPUS.is_dir():
        return f"not available: {PROC_GPUS} is missing"
    return ""


def sha256(path: Path) -> str:
    """The file's SHA-256, hex."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def find_nvcc() -> str | None:
    """nvcc on PATH, else under CUDA_HOME or /usr/local/cuda."""
    found = shutil.which("nvcc")
    if found:
        return found
    for candidate in (os.environ.get("CUDA_HOME", ""), "/usr/local/cuda"):
        path = Path(candidate) / "bin" / "nvcc"
        if candidate and path.is_file():
            return str(path)
    return None


def choose_workload(host: HostSetup, wanted: str, workload_python: str) -> None:
    """Sets the host's workload: ``wanted`` or, for ``auto``, PyTorch with CUDA, else CuPy, else CUDA C via nvcc.
    Skips the run when none is there."""
    pythons = [p for p in dict.fromkeys([workload_python or sys.executable, shutil.which("python3")]) if p]
    tried = []
    for kind in ["torch", "cupy", "cuda-c"] if wanted == "auto" else [wanted]:
        if kind == "cuda-c":
            if host.nvcc is None:
                tried.append("cuda-c: nvcc not found")
                continue
            cuda_c_binary(host)
            host.workload, host.workload_version, host.python = "cuda-c", "nvcc-built", None
            break
        probe = {
            "torch": "import sys, torch; print(torch.__version__); sys.exit(0 if torch.cuda.is_available() else 3)",
            "cupy": "import cupy; cupy.cuda.runtime.getDeviceCount(); print(cupy.__version__)",
        }[kind]
        for python in pythons:
            probe_run = run([python, "-c", probe], plain_env(), host.command_timeout)
            if probe_run.returncode == 0:
                version = (probe_run.stdout.strip().splitlines() or ["?"])[-1]
                host.workload, host.workload_version, host.python = kind, version, python
                break
            tried.append(f"{kind} with {python}: exit {probe_run.returncode}")
        if host.workload:
            break
    if not host.workload:
        raise SkipExecution(
            f"No GPU workload available (asked: {wanted}): PyTorch with CUDA, CuPy and nvcc were tried: "
            + "; ".join(tried)
        )
    logger.info(
        f"Workload: {host.workload} {host.workload_version} (asked: {wanted}"
        + (f"; not available: {'; '.join(tried)}" if tried else "")
        + (f"; interpreter {host.python}" if host.python else "")
        + ")",
        also_console=True,
    )


def cuda_c_binary(host: HostSetup) -> Path:
    """Our CUDA C workload, compiled with nvcc into the run's work folder on first use."""
    if host.cuda_c_binary is not None:
        return host.cuda_c_binary
    if host.nvcc is None:
        raise SkipExecution("The CUDA C workload needs nvcc, which was not found.")
    binary = host.workdir / "gpu_workload"
    command = [host.nvcc, "-O2", "-o", str(binary), str(CUDA_C_WORKLOAD)]
    compiled = run(command, plain_env(), host.command_timeout)
    if compiled.returncode != 0:
        raise HamiE2EFailure(f"`{' '.join(command)}` failed (exit {compiled.returncode}):\n{compiled.stdout}")
    logger.info(f"Built the CUDA C workload: {' '.join(command)}")
    host.cuda_c_binary = binary
    return binary


def workload_command(
    host: HostSetup, action: str, device: int = 0, mib: int = 0, seconds: float = 0, kind: str | None = None
) -> list[str]:
    """The command line of one workload run: ``info``, ``alloc``, ``hold`` or ``burn`` on ``device``."""
    kind = kind or host.workload
    hold = host.command_timeout.total_seconds()
    if kind == "cuda-c":
        binary = cuda_c_binary(host)
        args = {"info": [], "alloc": [str(mib)], "hold": [str(mib), str(hold)], "burn": [str(seconds)]}[action]
        return [str(binary), action, str(device), *args]
    python = host.python or sys.executable
    args = {
        "info": [],
        "alloc": ["--mib", str(mib)],
        "hold": ["--mib", str(mib), "--max-seconds", str(hold)],
        "burn": ["--seconds", str(seconds)],
    }[action]
    return [python, str(PYTHON_WORKLOAD), action, "--backend", kind, "--device", str(device), *args]
