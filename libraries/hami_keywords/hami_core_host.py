"""Keywords of the GPU host tier: run processes on a GPU host with HAMi-core's ``libvgpu.so`` preloaded, no
Kubernetes. Reading nvidia-smi output is `NvidiaSmiKeywords`' job; this component runs things and measures."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from robot.api import SkipExecution, logger
from robotlibcore import keyword

from nvidia_smi import DEFAULT_QUERY_FIELDS, find_oom_events, hami_core_lines, parse_nvidia_smi_report

from .component import LibraryComponent
from .errors import HamiE2EFailure

WORKLOADS_DIR = Path(__file__).resolve().parents[2] / "tools" / "workloads"
PYTHON_WORKLOAD = WORKLOADS_DIR / "gpu_workload.py"
CUDA_C_WORKLOAD = WORKLOADS_DIR / "gpu_workload.cu"

#: Variables that change what HAMi-core does; removed from the inherited environment so a tester's shell cannot leak
#: into a test. ``CUDA_DEVICE_MEMORY_LIMIT_<n>`` and ``CUDA_DEVICE_SM_LIMIT_<n>`` go by prefix.
HAMI_CORE_VARIABLES = (
    "LD_PRELOAD",
    "LIBCUDA_LOG_LEVEL",
    "GPU_CORE_UTILIZATION_POLICY",
    "CUDA_VISIBLE_DEVICES",
    "CUDA_DISABLE_CONTROL",
    "CUDA_TASK_PRIORITY",
    "ACTIVE_OOM_KILLER",
)
HAMI_CORE_PREFIXES = ("CUDA_DEVICE_MEMORY_LIMIT", "CUDA_DEVICE_SM_LIMIT", "CUDA_DEVICE_MEMORY_SHARED_CACHE")

NVIDIA_SMI_FORMATS = {
    "table": [],
    "csv": [f"--query-gpu={','.join(DEFAULT_QUERY_FIELDS)}", "--format=csv"],
    "csv-noheader": [f"--query-gpu={','.join(DEFAULT_QUERY_FIELDS)}", "--format=csv,noheader,nounits"],
    "query": ["-q"],
    "query-memory": ["-q", "-d", "MEMORY"],
    "list": ["-L"],
}
NvidiaSmiFormat = Literal["table", "csv", "csv-noheader", "query", "query-memory", "list"]
WorkloadKind = Literal["auto", "torch", "cupy", "cuda-c"]
BurnWorkload = Literal["selected", "torch", "cupy", "cuda-c"]
Expectation = Literal["throttled", "unthrottled"]

_PROTOCOL = re.compile(r"^(WORKLOAD|DEVICES|MEMINFO|ALLOC_OK|ALLOC_FAILED|HOLDING|RELEASED|THROUGHPUT) (.*)$", re.M)
_WATCHER = re.compile(
    r"device (\d+): userutil=(-?\d+) currentcores=(-?\d+) total=(-?\d+) limit=(-?\d+) share=(-?\d+)"
)
_UTIL_SWITCH = re.compile(r"util_switch=(\d+)")


@dataclass
class HostSetup:
    """What `Prepare GPU Host` found and chose; kept for the whole run (the library has GLOBAL scope)."""

    libvgpu: Path
    libvgpu_sha256: str
    preload: bool
    workdir: Path
    nvidia_smi: str
    gpu_count: int
    gpu_model: str
    card_mib: int
    driver_version: str
    cuda_version: str
    workload: str  # torch | cupy | cuda-c
    workload_version: str
    python: str | None
    command_timeout: timedelta
    ready_timeout: timedelta
    cuda_c_binary: Path | None = None
    nvcc: str | None = None

    def facts(self) -> dict[str, Any]:
        return {
            "target": "GPU host",
            "gpu_model": self.gpu_model,
            "gpu_count": self.gpu_count,
            "card_mib": self.card_mib,
            "driver_version": self.driver_version,
            "cuda_version": self.cuda_version,
            "libvgpu": str(self.libvgpu),
            "libvgpu_sha256": self.libvgpu_sha256,
            "workload": f"{self.workload} {self.workload_version}".strip(),
            "workload_kind": self.workload,
            "preload": self.preload,
        }


@dataclass
class Background:
    """A workload started with `Start Workload Holding GPU Memory`."""

    description: str
    process: subprocess.Popen
    output_file: Path
    handle: dict[str, Any] = field(default_factory=dict)


class HamiCoreHostKeywords(LibraryComponent):
    """Run nvidia-smi and small GPU workloads with HAMi-core (``libvgpu.so``) preloaded and its environment
    variables set, on a GPU host without Kubernetes.

    Start with `Prepare GPU Host` (suite setup): it skips the run when there is no GPU or no ``libvgpu.so``, picks
    the workload (PyTorch, else CuPy, else a CUDA C program compiled with nvcc) and returns the facts for the report
    metadata. `Set HAMi-Core Environment` then says which HAMi-core variables the next processes get."""

    def __init__(self, ctx) -> None:
        super().__init__(ctx)
        self._host: HostSetup | None = None
        self._env: dict[str, str] = {}
        self._cache_counter = 0
        self._cache: Path | None = None
        self._background: list[Background] = []

    # ------------------------------------------------------------------------------------------------- setup
    @keyword("Prepare GPU Host", tags=("GPU host", "Setup"))
    def prepare_gpu_host(
        self,
        libvgpu: str,
        workload: WorkloadKind = "auto",
        workload_python: str = "",
        preload: bool = True,
        command_timeout: timedelta = timedelta(minutes=2),
        ready_timeout: timedelta = timedelta(seconds=60),
    ) -> dict[str, Any]:
        """Checks the host and returns its facts for the report; skips (not fails) the run when there is no GPU or
        no ``libvgpu.so``.

        | =Argument= | =Description= |
        | ``libvgpu`` | Path of HAMi-core's ``libvgpu.so``. |
        | ``workload`` | ``auto`` (PyTorch with CUDA, else CuPy, else CUDA C via nvcc), or one of them. |
        | ``workload_python`` | Interpreter for PyTorch/CuPy; empty: this Python, then ``python3`` on PATH. |
        | ``preload`` | ``False`` runs everything WITHOUT HAMi-core: a fault-injection run, in which every isolation test must fail. |
        | ``command_timeout`` | Limit for one nvidia-smi or workload run. |
        | ``ready_timeout`` | How long a background workload may take to hold its memory. |

        Returned keys: ``target``, ``gpu_model``, ``gpu_count``, ``card_mib``, ``driver_version``,
        ``cuda_version``, ``libvgpu``, ``libvgpu_sha256``, ``workload``, ``workload_kind``, ``preload``.

        Example:
        | ${host}=    `Prepare GPU Host`    ${LIBVGPU}    workload=${WORKLOAD_KIND}
        | Set Suite Metadata    GPU Model    ${host}[gpu_model]
        """
        nvidia_smi = shutil.which("nvidia-smi")
        if nvidia_smi is None:
            raise SkipExecution("No GPU host: nvidia-smi is not on PATH, so there is no NVIDIA driver here.")
        plain = self._run([nvidia_smi], env=self._plain_env(), timeout=command_timeout)
        if plain.returncode != 0:
            raise SkipExecution(f"No usable GPU: nvidia-smi exited {plain.returncode}: {plain.stdout.strip()[:300]}")
        library = Path(libvgpu).expanduser()
        if not library.is_file():
            raise SkipExecution(
                f"No HAMi-core: libvgpu.so not found at {library} (set LIBVGPU, e.g. "
                "--variable LIBVGPU:/usr/local/vgpu/libvgpu.so)."
            )
        try:
            table = parse_nvidia_smi_report(plain.stdout)
        except ValueError as error:
            raise HamiE2EFailure(f"nvidia-smi on this host could not be parsed: {error}") from None
        listing = self._run([nvidia_smi, *NVIDIA_SMI_FORMATS["csv"]], env=self._plain_env(), timeout=command_timeout)
        gpus = parse_nvidia_smi_report(listing.stdout).gpus if listing.returncode == 0 else table.gpus
        if not gpus:
            raise SkipExecution("No GPU: nvidia-smi lists none.")
        workdir = Path(tempfile.mkdtemp(prefix="hami-e2e-host-"))
        self._host = HostSetup(
            libvgpu=library.resolve(),
            libvgpu_sha256=_sha256(library),
            preload=preload,
            workdir=workdir,
            nvidia_smi=nvidia_smi,
            gpu_count=len(gpus),
            gpu_model=gpus[0].name or "unknown",
            card_mib=gpus[0].memory_total_mib or 0,
            driver_version=table.driver_version or "unknown",
            cuda_version=table.cuda_version or "unknown",
            workload="",
            workload_version="",
            python=None,
            command_timeout=command_timeout,
            ready_timeout=ready_timeout,
            nvcc=_find_nvcc(),
        )
        self._choose_workload(workload, workload_python)
        facts = self._host.facts()
        logger.info("GPU host: " + ", ".join(f"{k}={v}" for k, v in facts.items()))
        if not preload:
            logger.warn(
                "HAMi-core is NOT preloaded (preload=False): this is a fault-injection run; every isolation test "
                "is expected to FAIL."
            )
        return facts

    @keyword("Require GPU Count", tags=("GPU host", "Setup"))
    def require_gpu_count(self, minimum: int) -> None:
        """Skips the current test or suite unless the host has at least ``minimum`` GPUs.

        Example:
        | `Require GPU Count`    2
        """
        host = self._require_host()
        if host.gpu_count < minimum:
            raise SkipExecution(
                f"Needs {minimum} GPUs; this host has {host.gpu_count} ({host.gpu_model}). Run on a multi-GPU host."
            )

    @keyword("Require CUDA Compiler", tags=("GPU host", "Setup"))
    def require_cuda_compiler(self) -> None:
        """Skips the current test unless nvcc is available to build the CUDA C workload.

        Example:
        | `Require CUDA Compiler`
        """
        if self._require_host().nvcc is None:
            raise SkipExecution("Needs nvcc (CUDA toolkit) to build the CUDA C workload; none found on PATH.")

    @keyword("Set HAMi-Core Environment", tags=("GPU host", "Setup"))
    def set_hami_core_environment(self, **variables: str) -> None:
        """Sets the HAMi-core environment variables for the processes this test starts next, replacing earlier
        ones. Every call also gets a fresh shared-region file (``CUDA_DEVICE_MEMORY_SHARED_CACHE``), so processes
        started after one call share one limit, as the containers of one pod do.

        Example:
        | `Set HAMi-Core Environment`    CUDA_DEVICE_MEMORY_LIMIT=3000m    LIBCUDA_LOG_LEVEL=1
        """
        self._require_host()
        self._env = {name: str(value) for name, value in variables.items()}
        self._new_cache()
        shown = " ".join(f"{k}={v}" for k, v in self._env.items()) or "(no HAMi-core variables)"
        logger.info(f"HAMi-core environment: {shown}, shared region {self._cache}")

    @keyword("Clean Up HAMi-Core Processes", tags=("GPU host", "Teardown"))
    def clean_up_hami_core_processes(self) -> None:
        """Stops the workloads this test left running and forgets its HAMi-core environment (test teardown).

        Example:
        | [Teardown]    `Clean Up HAMi-Core Processes`
        """
        errors = []
        for item in reversed(self._background):
            try:
                self._stop(item)
            except Exception as error:  # noqa: BLE001 - every process gets its turn
                errors.append(f"{item.description}: {error}")
        self._background = []
        self._env = {}
        self._cache = None
        if errors:
            raise HamiE2EFailure("Could not stop: " + "; ".join(errors))

    # --------------------------------------------------------------------------------------------- nvidia-smi
    @keyword("Run Nvidia Smi Under HAMi-Core", tags=("GPU host", "nvidia-smi"))
    def run_nvidia_smi_under_hami_core(self, output_format: NvidiaSmiFormat = "table") -> str:
        """Runs nvidia-smi with HAMi-core preloaded and the environment of `Set HAMi-Core Environment`; returns
        stdout and stderr merged (as ``kubectl logs`` shows them), HAMi-core's lines included.

        ``output_format``: ``table`` (default), ``csv`` (``--query-gpu=index,uuid,name,memory.total,memory.used,
        memory.free --format=csv``), ``csv-noheader`` (same, ``csv,noheader,nounits``), ``query`` (``-q``),
        ``query-memory`` (``-q -d MEMORY``), ``list`` (``-L``).

        Example:
        | ${output}=    `Run Nvidia Smi Under HAMi-Core`    csv
        | `GPU Memory Total Should Be`    ${output}    3000
        """
        host = self._require_host()
        return self._nvidia_smi(host, output_format, self._hami_env(host))

    @keyword("Run Nvidia Smi Without HAMi-Core", tags=("GPU host", "nvidia-smi"))
    def run_nvidia_smi_without_hami_core(self, output_format: NvidiaSmiFormat = "table") -> str:
        """Runs nvidia-smi with no HAMi-core at all (no preload, no HAMi-core variables): what the card really has.

        Example:
        | ${output}=    `Run Nvidia Smi Without HAMi-Core`
        """
        host = self._require_host()
        return self._nvidia_smi(host, output_format, self._plain_env())

    # ---------------------------------------------------------------------------------------------- workloads
    @keyword("Allocate GPU Memory Under HAMi-Core", tags=("GPU host", "Workload"))
    def allocate_gpu_memory_under_hami_core(self, mib: int, device: int = 0) -> dict[str, Any]:
        """Runs the workload once to allocate ``mib`` MiB on ``device`` (index among the visible devices) under
        HAMi-core, writes to it and exits. Returns the result without judging it: ``exit_code``, ``output``
        (stdout and stderr merged), ``workload``, ``command``, ``seconds``.

        Judge it with `Workload Should Succeed` or `Workload Should Fail With HAMi-Core OOM`.

        Example:
        | ${result}=    `Allocate GPU Memory Under HAMi-Core`    1000
        | `Workload Should Succeed`    ${result}
        """
        host = self._require_host()
        return self._workload(host, "alloc", device=device, mib=mib)

    @keyword("Read CUDA Memory Info Under HAMi-Core", tags=("GPU host", "Workload"))
    def read_cuda_memory_info_under_hami_core(self, device: int = 0) -> dict[str, Any]:
        """Asks CUDA (``cudaMemGetInfo`` / ``torch.cuda.mem_get_info``) under HAMi-core how much memory ``device``
        has; returns ``total_mib``, ``free_mib``, ``device_count`` and the ``output``.

        Example:
        | ${info}=    `Read CUDA Memory Info Under HAMi-Core`
        | `CUDA Total Memory Should Be`    ${info}    3000
        """
        host = self._require_host()
        result = self._workload(host, "info", device=device)
        meminfo = _protocol(result["output"], "MEMINFO")
        devices = _protocol(result["output"], "DEVICES")
        if result["exit_code"] != 0 or not meminfo:
            raise HamiE2EFailure(
                f"{result['workload']} workload could not read CUDA memory info of device {device} under HAMi-core "
                f"(exit code {result['exit_code']}):\n{result['output']}"
            )
        return {
            "total_mib": int(meminfo["total_mib"]),
            "free_mib": int(meminfo["free_mib"]),
            "device_count": int(devices.get("count", -1)),
            "device": device,
            "output": result["output"],
        }

    @keyword("Start Workload Holding GPU Memory", tags=("GPU host", "Workload"))
    def start_workload_holding_gpu_memory(self, mib: int, device: int = 0) -> dict[str, Any]:
        """Starts the workload in the background to allocate ``mib`` MiB on ``device`` under HAMi-core and keep it;
        returns once it holds the memory (within the ``ready_timeout`` of `Prepare GPU Host`). It runs until
        `Clean Up HAMi-Core Processes` or `Stop Workload` ends it.

        Example:
        | ${holder}=    `Start Workload Holding GPU Memory`    1800
        """
        host = self._require_host()
        command = self._workload_command(host, "hold", device=device, mib=mib)
        output_file = host.workdir / f"holder-{len(self._background)}-{time.monotonic_ns()}.log"
        env = self._hami_env(host)
        self._log_command(command, env)
        with output_file.open("w") as sink:
            process = subprocess.Popen(command, env=env, stdout=sink, stderr=subprocess.STDOUT, text=True)
        item = Background(f"{host.workload} workload holding {mib} MiB on device {device}", process, output_file)
        item.handle = {"pid": process.pid, "mib": mib, "device": device, "index": len(self._background)}
        self._background.append(item)
        deadline = time.monotonic() + host.ready_timeout.total_seconds()
        while True:
            text = output_file.read_text()
            if "\nHOLDING " in f"\n{text}":
                logger.info(f"{item.description} (pid {process.pid}) holds its memory:\n{text}")
                return item.handle
            if process.poll() is not None:
                raise HamiE2EFailure(
                    f"{item.description} exited with code {process.returncode} before holding its memory:\n{text}"
                )
            if time.monotonic() >= deadline:
                raise HamiE2EFailure(
                    f"{item.description} did not hold its memory within {host.ready_timeout}; output so far:\n{text}"
                )
            time.sleep(0.1)

    @keyword("Stop Workload", tags=("GPU host", "Workload"))
    def stop_workload(self, handle: dict[str, Any]) -> str:
        """Stops a workload started by `Start Workload Holding GPU Memory` (SIGTERM: it frees its memory and exits)
        and returns its output.

        Example:
        | `Stop Workload`    ${holder}
        """
        for item in self._background:
            if item.handle.get("pid") == handle.get("pid"):
                output = self._stop(item)
                self._background.remove(item)
                return output
        raise HamiE2EFailure(f"No background workload with pid {handle.get('pid')} is running in this test.")

    @keyword("Workload Should Succeed", tags=("GPU host", "Workload", "Assertion"))
    def workload_should_succeed(self, result: dict[str, Any], message: str | None = None) -> None:
        """Fails unless the workload ``result`` exited 0 and reported its allocation (``ALLOC_OK``) or its figures.

        Example:
        | `Workload Should Succeed`    ${result}
        """
        oom = find_oom_events(result["output"])
        ok = any(_protocol(result["output"], tag) for tag in ("ALLOC_OK", "MEMINFO", "THROUGHPUT"))
        if result["exit_code"] != 0 or not ok:
            hint = f" HAMi-core refused it: {oom[0].line}" if oom else ""
            raise HamiE2EFailure(
                message
                or f"{result['workload']} workload `{result['action']}` failed with exit code {result['exit_code']}, "
                f"expected success.{hint}\nOutput:\n{result['output']}"
            )
        logger.info(f"{result['workload']} workload `{result['action']}` succeeded.")

    @keyword("Workload Should Fail With HAMi-Core OOM", tags=("GPU host", "Workload", "Assertion"))
    def workload_should_fail_with_hami_core_oom(
        self, result: dict[str, Any], limit_mib: int | None = None, device: int = 0, message: str | None = None
    ) -> None:
        """Fails unless the workload ``result`` exited non-zero because HAMi-core refused the allocation: its
        ``Device <device> OOM <requested> / <limit>`` line is in the output (with ``limit_mib`` MiB, if given) and
        the workload saw an out-of-memory error.

        Example:
        | ${result}=    `Allocate GPU Memory Under HAMi-Core`    4000
        | `Workload Should Fail With HAMi-Core OOM`    ${result}    limit_mib=3000
        """
        output = result["output"]
        failed = _protocol(output, "ALLOC_FAILED")
        if result["exit_code"] == 0:
            raise HamiE2EFailure(
                message
                or f"{result['workload']} workload `{result['action']}` succeeded (exit code 0), expected HAMi-core "
                f"to refuse it with 'Device {device} OOM ...': the memory limit was not enforced (is libvgpu.so "
                f"preloaded?).\nOutput:\n{output}"
            )
        events = [e for e in find_oom_events(output) if e.device == device]
        if not events:
            raise HamiE2EFailure(
                message
                or f"{result['workload']} workload failed (exit code {result['exit_code']}) but without HAMi-core's "
                f"'Device {device} OOM <requested> / <limit>' line, so HAMi-core did not refuse it; the failure was "
                f"{failed.get('error', 'not reported')!r}.\nOutput:\n{output}"
            )
        if limit_mib is not None and events[0].limit_bytes != limit_mib * 1024 * 1024:
            raise HamiE2EFailure(
                message
                or f"HAMi-core refused the allocation against a limit of {events[0].limit_bytes} bytes "
                f"({events[0].limit_mib:g} MiB), expected {limit_mib * 1024 * 1024} bytes ({limit_mib} MiB): "
                f"{events[0].line}"
            )
        if failed.get("reason") != "oom":
            raise HamiE2EFailure(
                message
                or f"HAMi-core printed '{events[0].line}' but the workload failed with "
                f"{failed.get('reason', 'no ALLOC_FAILED line')!r} instead of an out-of-memory error "
                f"({failed.get('error', '')}).\nOutput:\n{output}"
            )
        logger.info(
            f"HAMi-core refused the allocation ({len(events)} OOM line(s)): {events[0].line}; the workload exited "
            f"{result['exit_code']} with: {failed.get('error')}"
        )

    @keyword("CUDA Total Memory Should Be", tags=("GPU host", "Workload", "Assertion"))
    def cuda_total_memory_should_be(self, info: dict[str, Any], expected_mib: int, message: str | None = None) -> None:
        """Fails unless CUDA's total memory in ``info`` (from `Read CUDA Memory Info Under HAMi-Core`) is
        ``expected_mib`` MiB.

        Example:
        | `CUDA Total Memory Should Be`    ${info}    3000
        """
        if info["total_mib"] != expected_mib:
            hint = (
                "HAMi-core limit not applied to cudaMemGetInfo"
                if info["total_mib"] > expected_mib
                else "a smaller limit than expected"
            )
            raise HamiE2EFailure(
                message
                or f"CUDA reported {info['total_mib']} MiB total on device {info['device']}, expected "
                f"{expected_mib} MiB: {hint}.\nOutput:\n{info['output']}"
            )
        logger.info(f"CUDA reports {info['total_mib']} MiB total ({info['free_mib']} MiB free) on device {info['device']}.")

    @keyword("CUDA Device Count Should Be", tags=("GPU host", "Workload", "Assertion"))
    def cuda_device_count_should_be(self, info: dict[str, Any], expected: int, message: str | None = None) -> None:
        """Fails unless the workload saw ``expected`` CUDA devices (``info`` from `Read CUDA Memory Info Under
        HAMi-Core`).

        Example:
        | `CUDA Device Count Should Be`    ${info}    1
        """
        if info["device_count"] != expected:
            raise HamiE2EFailure(
                message
                or f"the workload saw {info['device_count']} CUDA device(s), expected {expected} "
                f"(check CUDA_VISIBLE_DEVICES).\nOutput:\n{info['output']}"
            )

    # ------------------------------------------------------------------------------------------- core limit
    @keyword("Measure Core Limit Throughput Ratio", tags=("GPU host", "Workload", "Measure"))
    def measure_core_limit_throughput_ratio(
        self, sm_limit: int, seconds: float, workload: BurnWorkload = "selected", device: int = 0
    ) -> dict[str, Any]:
        """Runs a sustained workload for ``seconds`` under HAMi-core twice, without and with
        ``CUDA_DEVICE_SM_LIMIT=<sm_limit>``, and returns the throughput ratio (limited / unlimited).

        ``workload``: ``selected`` (the one `Prepare GPU Host` chose: bf16/fp16 matrix products in PyTorch or
        CuPy), or ``cuda-c`` (our kernel of many small blocks), ``torch``, ``cupy``. Both runs use
        ``LIBCUDA_LOG_LEVEL=3`` so that HAMi-core's utilization watcher reports what it saw; that report (watcher
        cycles, the utilization it read, whether its token bucket ran dry) is logged with both throughputs, whatever
        the ratio.

        Returned keys: ``ratio``, ``unlimited``, ``limited`` (TFLOP/s), ``unit``, ``sm_limit``, ``workload``,
        ``watcher`` (a one-line summary).

        Example:
        | ${measured}=    `Measure Core Limit Throughput Ratio`    30    seconds=6
        | `Core Limit Throughput Ratio Should Be`    ${measured}    throttled    max_ratio=0.75
        """
        host = self._require_host()
        kind = host.workload if workload == "selected" else workload
        base = {k: v for k, v in self._env.items() if not k.startswith("CUDA_DEVICE_SM_LIMIT")}
        base.setdefault("LIBCUDA_LOG_LEVEL", "3")
        runs = {}
        for label, extra in (("unlimited", {}), ("limited", {"CUDA_DEVICE_SM_LIMIT": str(sm_limit)})):
            saved_env, saved_cache = self._env, self._cache
            self._env = {**base, **extra}
            self._new_cache()
            try:
                result = self._workload(host, "burn", device=device, seconds=seconds, kind=kind, quiet=True)
            finally:
                self._env, self._cache = saved_env, saved_cache
            figures = _protocol(result["output"], "THROUGHPUT")
            if result["exit_code"] != 0 or not figures:
                raise HamiE2EFailure(
                    f"{kind} sustained workload ({label}) failed with exit code {result['exit_code']}:\n"
                    + _tail(result["output"])
                )
            runs[label] = (float(figures["value"]), figures.get("unit", ""), result["output"])
        unlimited, limited = runs["unlimited"][0], runs["limited"][0]
        ratio = limited / unlimited if unlimited > 0 else float("nan")
        watcher = _watcher_summary(runs["limited"][2], device)
        summary = (
            f"Core limit {sm_limit}% with the {kind} workload, {seconds:g} s each: unlimited {unlimited:.1f} "
            f"{runs['unlimited'][1]}, limited {limited:.1f} {runs['limited'][1]}, ratio {ratio:.3f} "
            f"(HAMi's aim: about {sm_limit / 100:.2f}). HAMi-core watcher (limited run): {watcher}"
        )
        logger.info(summary, also_console=True)
        return {
            "ratio": ratio,
            "unlimited": unlimited,
            "limited": limited,
            "unit": runs["limited"][1],
            "sm_limit": sm_limit,
            "workload": kind,
            "watcher": watcher,
            "summary": summary,
        }

    @keyword("Core Limit Throughput Ratio Should Be", tags=("GPU host", "Assertion"))
    def core_limit_throughput_ratio_should_be(
        self,
        measured: dict[str, Any],
        expectation: Expectation,
        max_ratio: float = 0.75,
        min_ratio: float = 0.9,
        message: str | None = None,
    ) -> None:
        """Fails unless the ratio measured by `Measure Core Limit Throughput Ratio` meets ``expectation``:
        ``throttled`` (ratio at most ``max_ratio``) or ``unthrottled`` (ratio at least ``min_ratio``). The measured
        figures are in the message either way.

        Example:
        | `Core Limit Throughput Ratio Should Be`    ${measured}    throttled    max_ratio=0.75
        """
        ratio = measured["ratio"]
        if expectation == "throttled" and not ratio <= max_ratio:
            raise HamiE2EFailure(
                message
                or f"CUDA_DEVICE_SM_LIMIT={measured['sm_limit']} did not throttle the {measured['workload']} workload: "
                f"throughput ratio {ratio:.3f} (limited {measured['limited']:.1f} / unlimited "
                f"{measured['unlimited']:.1f} {measured['unit']}), expected at most {max_ratio}. "
                f"HAMi-core watcher: {measured['watcher']}"
            )
        if expectation == "unthrottled" and not ratio >= min_ratio:
            raise HamiE2EFailure(
                message
                or f"CUDA_DEVICE_SM_LIMIT={measured['sm_limit']} throttled the {measured['workload']} workload: "
                f"throughput ratio {ratio:.3f} (limited {measured['limited']:.1f} / unlimited "
                f"{measured['unlimited']:.1f} {measured['unit']}), expected at least {min_ratio}. "
                f"HAMi-core watcher: {measured['watcher']}"
            )
        logger.info(f"Core limit ratio {ratio:.3f} meets the expectation '{expectation}'.")

    # ------------------------------------------------------------------------------------------- internals
    def _require_host(self) -> HostSetup:
        if self._host is None:
            raise HamiE2EFailure(
                "The GPU host is not prepared: run the folder (robot suites/host/) so that its __init__.robot "
                "calls `Prepare GPU Host`."
            )
        return self._host

    def _new_cache(self) -> None:
        host = self._require_host()
        self._cache_counter += 1
        self._cache = host.workdir / f"cudevshr-{self._cache_counter}.cache"

    @staticmethod
    def _plain_env() -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in HAMI_CORE_VARIABLES and not k.startswith(HAMI_CORE_PREFIXES)
        }
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def _hami_env(self, host: HostSetup) -> dict[str, str]:
        env = self._plain_env()
        if self._cache is None:
            self._new_cache()
        env["CUDA_DEVICE_MEMORY_SHARED_CACHE"] = str(self._cache)
        if host.preload:
            env["LD_PRELOAD"] = str(host.libvgpu)
        env.update(self._env)
        return env

    def _nvidia_smi(self, host: HostSetup, output_format: str, env: dict[str, str]) -> str:
        command = [host.nvidia_smi, *NVIDIA_SMI_FORMATS[output_format]]
        self._log_command(command, env)
        completed = self._run(command, env=env, timeout=host.command_timeout)
        if completed.returncode != 0:
            raise HamiE2EFailure(
                f"`{' '.join(command)}` exited with code {completed.returncode}:\n{completed.stdout}"
            )
        return completed.stdout

    def _workload(
        self,
        host: HostSetup,
        action: str,
        device: int = 0,
        mib: int = 0,
        seconds: float = 0,
        kind: str | None = None,
        quiet: bool = False,
    ) -> dict[str, Any]:
        kind = kind or host.workload
        command = self._workload_command(host, action, device=device, mib=mib, seconds=seconds, kind=kind)
        env = self._hami_env(host)
        self._log_command(command, env)
        started = time.monotonic()
        completed = self._run(command, env=env, timeout=host.command_timeout)
        result = {
            "workload": kind,
            "action": action,
            "command": " ".join(command),
            "exit_code": completed.returncode,
            "output": completed.stdout,
            "seconds": round(time.monotonic() - started, 2),
        }
        shown = _tail(completed.stdout) if quiet else completed.stdout
        logger.info(f"exit code {completed.returncode} after {result['seconds']} s; output:\n{shown}")
        return result

    def _workload_command(
        self, host: HostSetup, action: str, device: int = 0, mib: int = 0, seconds: float = 0, kind: str | None = None
    ) -> list[str]:
        kind = kind or host.workload
        hold = host.command_timeout.total_seconds()
        if kind == "cuda-c":
            binary = self._cuda_c_binary(host)
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

    def _choose_workload(self, wanted: str, workload_python: str) -> None:
        host = self._require_host()
        pythons = [p for p in dict.fromkeys([workload_python or sys.executable, shutil.which("python3")]) if p]
        tried = []
        for kind in (["torch", "cupy", "cuda-c"] if wanted == "auto" else [wanted]):
            if kind == "cuda-c":
                if host.nvcc is None:
                    tried.append("cuda-c: nvcc not found")
                    continue
                self._cuda_c_binary(host)
                host.workload, host.workload_version, host.python = "cuda-c", "nvcc-built", None
                break
            probe = {
                "torch": "import sys, torch; print(torch.__version__); sys.exit(0 if torch.cuda.is_available() else 3)",
                "cupy": "import cupy; cupy.cuda.runtime.getDeviceCount(); print(cupy.__version__)",
            }[kind]
            for python in pythons:
                probe_run = self._run([python, "-c", probe], env=self._plain_env(), timeout=host.command_timeout)
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

    def _cuda_c_binary(self, host: HostSetup) -> Path:
        if host.cuda_c_binary is not None:
            return host.cuda_c_binary
        if host.nvcc is None:
            raise SkipExecution("The CUDA C workload needs nvcc, which was not found.")
        binary = host.workdir / "gpu_workload"
        command = [host.nvcc, "-O2", "-o", str(binary), str(CUDA_C_WORKLOAD)]
        compiled = self._run(command, env=self._plain_env(), timeout=host.command_timeout)
        if compiled.returncode != 0:
            raise HamiE2EFailure(f"`{' '.join(command)}` failed (exit {compiled.returncode}):\n{compiled.stdout}")
        logger.info(f"Built the CUDA C workload: {' '.join(command)}")
        host.cuda_c_binary = binary
        return binary

    def _stop(self, item: Background) -> str:
        if item.process.poll() is None:
            item.process.send_signal(signal.SIGTERM)
            try:
                item.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                item.process.kill()
                item.process.wait(timeout=10)
        output = item.output_file.read_text()
        logger.info(f"Stopped {item.description} (exit code {item.process.returncode}); output:\n{output}")
        return output

    @staticmethod
    def _run(command: list[str], env: dict[str, str], timeout: timedelta) -> subprocess.CompletedProcess:
        try:
            return subprocess.run(
                command,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                errors="replace",
                timeout=timeout.total_seconds(),
                check=False,
            )
        except subprocess.TimeoutExpired as error:
            out = error.stdout.decode(errors="replace") if isinstance(error.stdout, bytes) else (error.stdout or "")
            raise HamiE2EFailure(f"`{' '.join(command)}` did not finish within {timeout}; output so far:\n{out}") from None
        except FileNotFoundError as error:
            raise HamiE2EFailure(f"`{command[0]}` could not be started: {error.strerror}") from None

    def _log_command(self, command: list[str], env: dict[str, str]) -> None:
        shown = {k: v for k, v in env.items() if k in HAMI_CORE_VARIABLES or k.startswith(HAMI_CORE_PREFIXES)}
        prefix = " ".join(f"{k}={v}" for k, v in shown.items())
        logger.info(f"Running: {prefix} {' '.join(command)}".replace("  ", " "))


# --------------------------------------------------------------------------------------------------- helpers
def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _find_nvcc() -> str | None:
    found = shutil.which("nvcc")
    if found:
        return found
    for candidate in (os.environ.get("CUDA_HOME", ""), "/usr/local/cuda"):
        path = Path(candidate) / "bin" / "nvcc"
        if candidate and path.is_file():
            return str(path)
    return None


def _protocol(output: str, tag: str) -> dict[str, str]:
    """The ``key=value`` pairs of the last ``<TAG> ...`` line a workload printed (``error=`` takes the rest)."""
    found: dict[str, str] = {}
    for match in _PROTOCOL.finditer(output):
        if match[1] != tag:
            continue
        found = {}
        rest = match[2]
        if " error=" in f" {rest}":
            rest, error = f" {rest}".split(" error=", 1)
            found["error"] = error.strip()
        for pair in rest.split():
            key, _, value = pair.partition("=")
            found[key] = value
    return found


def _watcher_summary(output: str, device: int) -> str:
    cycles = [tuple(map(int, m.groups())) for m in _WATCHER.finditer(output) if int(m[1]) == device]
    switches = sorted({int(m[1]) for m in _UTIL_SWITCH.finditer(output)})
    if not cycles:
        info = len(hami_core_lines(output, "Info"))
        return (
            f"no utilization-watcher cycle for device {device} was logged ({info} Info lines; util_switch values "
            f"{switches or 'none'}): the watcher never ran for this device, so HAMi-core could not throttle"
        )
    utils = [c[1] for c in cycles]
    dry = sum(1 for c in cycles if c[2] < 0)
    return (
        f"{len(cycles)} watcher cycles, util_switch {switches or 'not logged'}, utilization it read "
        f"{min(utils)}..{max(utils)} % (limit {cycles[-1][4]} %), token bucket below zero in {dry} of them"
    )


def _tail(text: str, lines: int = 40) -> str:
    """The protocol lines plus the last ``lines`` lines: HAMi-core at log level 3 prints a lot."""
    all_lines = text.splitlines()
    if len(all_lines) <= lines:
        return text
    protocol = [line for line in all_lines if _PROTOCOL.match(line)]
    return "\n".join([*protocol, f"... ({len(all_lines) - lines} lines not shown) ...", *all_lines[-lines:]])
