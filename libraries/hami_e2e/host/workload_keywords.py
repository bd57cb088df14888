"""Keywords that run nvidia-smi and the small GPU workloads under HAMi-core, in the current profile (host or
container), and judge what they saw."""

from __future__ import annotations

import time
from typing import Any, Literal

from robot.api import logger
from robotlibcore import keyword

from ..core.errors import HamiE2EFailure
from ..parsers.nvidia_smi import find_oom_events, hami_core_oom_problem, parse_nvidia_smi_report
from .discovery import NVIDIA_SMI_FORMATS, workload_command
from .processes import (
    NotReady,
    hami_env,
    in_profile,
    log_command,
    plain_env,
    result_of,
    run,
    start_background,
    stop_background,
)
from .protocol import protocol_fields, tail
from .state import HostComponent, HostSession, HostSetup, Profile

NvidiaSmiFormat = Literal["table", "csv", "csv-noheader", "query", "query-memory", "list"]


class HostWorkloadKeywords(HostComponent):
    """Run nvidia-smi and the workload (allocate, hold, ask CUDA for memory) under HAMi-core in the profile chosen
    with `Set HAMi-Core Environment` or `Set Up Container Given GPUs`, and assert on the results."""

    # --------------------------------------------------------------------------------------------- nvidia-smi
    @keyword("Run Nvidia Smi Under HAMi-Core", tags=("GPU host", "nvidia-smi"))
    def run_nvidia_smi_under_hami_core(self, output_format: NvidiaSmiFormat = "table") -> str:
        """Runs nvidia-smi with HAMi-core preloaded in the current profile (host or container); returns stdout and
        stderr merged (as ``kubectl logs`` shows them), HAMi-core's lines included.

        ``output_format``: ``table`` (default), ``csv`` (``--query-gpu=index,uuid,name,memory.total,memory.used,
        memory.free --format=csv``), ``csv-noheader`` (same, ``csv,noheader,nounits``), ``query`` (``-q``),
        ``query-memory`` (``-q -d MEMORY``), ``list`` (``-L``).

        Example:
        | ${output}=    `Run Nvidia Smi Under HAMi-Core`    csv
        | `GPU Memory Total Should Be`    ${output}    3000
        """
        host = self.session.require_host()
        profile = self.session.profile()
        command = in_profile(profile, [host.nvidia_smi, *NVIDIA_SMI_FORMATS[output_format]])
        return self._nvidia_smi(host, command, hami_env(host, profile))

    @keyword("Run Nvidia Smi Without HAMi-Core", tags=("GPU host", "nvidia-smi"))
    def run_nvidia_smi_without_hami_core(self, output_format: NvidiaSmiFormat = "table") -> str:
        """Runs nvidia-smi on the host with no HAMi-core at all (no preload, no HAMi-core variables): what the cards
        really have and hold.

        Example:
        | ${output}=    `Run Nvidia Smi Without HAMi-Core`
        """
        host = self.session.require_host()
        return self._nvidia_smi(host, [host.nvidia_smi, *NVIDIA_SMI_FORMATS[output_format]], plain_env())

    @keyword("Nvidia Smi Should List Host GPUs", tags=("GPU host", "nvidia-smi", "Container", "Assertion"))
    def nvidia_smi_should_list_host_gpus(self, output: str, gpus: str, message: str | None = None) -> None:
        """Fails unless nvidia-smi ``output`` (a format with UUIDs: ``csv``, ``list``, ``query``) lists exactly the
        host GPUs ``gpus``: NVML indexes on the host, comma-separated (``1``, ``0,1``), or ``all``. A container given
        some GPUs lists just those, renumbered from 0 in the host's order; a process on the host lists ``all``.

        Example:
        | ${output}=    `Run Nvidia Smi Under HAMi-Core`    csv
        | `Nvidia Smi Should List Host GPUs`    ${output}    1
        """
        host = self.session.require_host()
        if gpus.strip().lower() == "all":
            wanted = host.gpus
        else:
            wanted = sorted((host.gpu(int(part)) for part in gpus.replace(" ", "").split(",") if part), key=_index)
        expected = [g.uuid for g in wanted]
        try:
            listed = parse_nvidia_smi_report(output).gpus
        except ValueError as error:
            raise HamiE2EFailure(f"nvidia-smi output could not be parsed: {error}") from None
        seen = [g.uuid for g in sorted(listed, key=_index)]
        if seen != expected:
            raise self.fail(
                f"nvidia-smi listed {len(seen)} GPU(s) {seen}, expected host GPU(s) {gpus} {expected}: the "
                "process sees GPUs it was not given, or misses some it was given",
                message,
            )
        logger.info(f"nvidia-smi lists host GPU(s) {gpus}: {', '.join(expected)}")

    # ---------------------------------------------------------------------------------------------- workloads
    @keyword("Allocate GPU Memory Under HAMi-Core", tags=("GPU host", "Workload"))
    def allocate_gpu_memory_under_hami_core(self, mib: int, device: int = 0) -> dict[str, Any]:
        """Runs the workload once to allocate ``mib`` MiB on ``device`` (index among the devices the process sees)
        under HAMi-core, writes to it and exits. Returns the result without judging it: ``exit_code``, ``output``
        (stdout and stderr merged), ``workload``, ``command``, ``seconds``.

        Judge it with `Workload Should Succeed` or `Workload Should Fail With HAMi-Core OOM`.

        Example:
        | ${result}=    `Allocate GPU Memory Under HAMi-Core`    1000
        | `Workload Should Succeed`    ${result}
        """
        return run_workload(self.session, self.session.profile(), "alloc", device=device, mib=mib)

    @keyword("Read CUDA Memory Info Under HAMi-Core", tags=("GPU host", "Workload"))
    def read_cuda_memory_info_under_hami_core(self, device: int = 0) -> dict[str, Any]:
        """Asks CUDA (``cudaMemGetInfo`` / ``torch.cuda.mem_get_info``) under HAMi-core how much memory ``device``
        has, and how many devices there are. Returns ``total_mib``, ``free_mib``, ``used_mib`` (total - free: the
        CUDA context and whatever else HAMi-core counts), ``device_count``, ``device`` and ``output``.

        Example:
        | ${info}=    `Read CUDA Memory Info Under HAMi-Core`
        | `CUDA Total Memory Should Be`    ${info}    3000
        """
        result = run_workload(self.session, self.session.profile(), "info", device=device)
        figures = protocol_fields(result["output"], "MEMINFO")
        devices = protocol_fields(result["output"], "DEVICES")
        if result["exit_code"] != 0 or not figures:
            raise HamiE2EFailure(
                f"{result['workload']} workload could not read CUDA memory info (exit code {result['exit_code']}):\n"
                f"{result['output']}"
            )
        total, free = int(figures["total_mib"]), int(figures["free_mib"])
        return {
            "total_mib": total,
            "free_mib": free,
            "used_mib": total - free,
            "device_count": int(devices.get("count", -1)),
            "device": device,
            "output": result["output"],
        }

    @keyword("Start Workload Holding GPU Memory", tags=("GPU host", "Workload"))
    def start_workload_holding_gpu_memory(self, mib: int, device: int = 0) -> dict[str, Any]:
        """Starts the workload in the background to allocate ``mib`` MiB on ``device`` under HAMi-core and keep it,
        in the current profile; returns once it holds the memory (within the ``ready_timeout`` of `Prepare GPU
        Host`). It runs until `Clean Up HAMi-Core Processes` or `Stop Workload` ends it.

        Example:
        | ${holder}=    `Start Workload Holding GPU Memory`    1800
        """
        host = self.session.require_host()
        profile = self.session.profile()
        command = in_profile(profile, workload_command(host, "hold", device=device, mib=mib))
        output_file = host.workdir / f"holder-{len(self.session.background)}-{time.monotonic_ns()}.log"
        description = f"{host.workload} workload holding {mib} MiB on device {device} ({profile.name})"
        try:
            item = start_background(
                description, command, hami_env(host, profile), output_file, "HOLDING ", host.ready_timeout
            )
        except NotReady as error:
            self.session.background.append(error.item)
            raise
        item.handle.update(mib=mib, device=device, profile=profile.name)
        self.session.background.append(item)
        return item.handle

    @keyword("Stop Workload", tags=("GPU host", "Workload"))
    def stop_workload(self, handle: dict[str, Any]) -> str:
        """Stops a workload started by `Start Workload Holding GPU Memory` (SIGTERM: it frees its memory and exits)
        and returns its output.

        Example:
        | `Stop Workload`    ${holder}
        """
        for item in self.session.background:
            if item.handle.get("pid") == handle.get("pid"):
                output = stop_background(item)
                self.session.background.remove(item)
                return output
        raise HamiE2EFailure(f"No background workload with pid {handle.get('pid')} is running in this test.")

    # --------------------------------------------------------------------------------------------- assertions
    @keyword("Workload Should Succeed", tags=("GPU host", "Workload", "Assertion"))
    def workload_should_succeed(self, result: dict[str, Any], message: str | None = None) -> None:
        """Fails unless the workload ``result`` exited 0 and reported its allocation (``ALLOC_OK``) or its figures.

        Example:
        | `Workload Should Succeed`    ${result}
        """
        oom = find_oom_events(result["output"])
        ok = any(protocol_fields(result["output"], tag) for tag in ("ALLOC_OK", "MEMINFO", "THROUGHPUT"))
        if result["exit_code"] != 0 or not ok:
            hint = f" HAMi-core refused it: {oom[0].line}" if oom else ""
            raise self.fail(
                f"{result['workload']} workload `{result['action']}` failed with exit code {result['exit_code']}, "
                f"expected success.{hint}\nOutput:\n{result['output']}",
                message,
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
        failed = protocol_fields(output, "ALLOC_FAILED")
        if result["exit_code"] == 0:
            raise self.fail(
                f"{result['workload']} workload `{result['action']}` succeeded (exit code 0), expected HAMi-core "
                f"to refuse it with 'Device {device} OOM ...': the memory limit was not enforced (is libvgpu.so "
                f"preloaded?).\nOutput:\n{output}",
                message,
            )
        problem = hami_core_oom_problem(output, limit_mib, device)
        if problem:
            raise self.fail(
                f"{result['workload']} workload failed (exit code {result['exit_code']}) but {problem}; the failure "
                f"was {failed.get('error', 'not reported')!r}.\nOutput:\n{output}",
                message,
            )
        events = [e for e in find_oom_events(output) if e.device == device]
        if failed.get("reason") != "oom":
            raise self.fail(
                f"HAMi-core printed '{events[0].line}' but the workload failed with "
                f"{failed.get('reason', 'no ALLOC_FAILED line')!r} instead of an out-of-memory error "
                f"({failed.get('error', '')}).\nOutput:\n{output}",
                message,
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
            raise self.fail(
                f"CUDA reported {info['total_mib']} MiB total on device {info['device']}, expected "
                f"{expected_mib} MiB: {hint}.\nOutput:\n{info['output']}",
                message,
            )
        logger.info(
            f"CUDA reports {info['total_mib']} MiB total ({info['free_mib']} MiB free) on device {info['device']}."
        )

    @keyword("CUDA Used Memory Should Be At Least", tags=("GPU host", "Workload", "Assertion"))
    def cuda_used_memory_should_be_at_least(
        self, info: dict[str, Any], minimum_mib: int, message: str | None = None
    ) -> None:
        """Fails unless CUDA reports at least ``minimum_mib`` MiB of device memory in use (total - free) in ``info``
        (from `Read CUDA Memory Info Under HAMi-Core`). A fresh process under HAMi-core already uses its CUDA context
        (about 518 MiB on an H100), so a figure near 0 means HAMi-core did not count the context.

        Example:
        | `CUDA Used Memory Should Be At Least`    ${info}    100
        """
        if info["used_mib"] < minimum_mib:
            raise self.fail(
                f"CUDA reported {info['free_mib']} MiB free of {info['total_mib']} MiB on device {info['device']}: "
                f"{info['used_mib']} MiB in use, expected at least {minimum_mib} MiB (the CUDA context): HAMi-core "
                f"did not count this process's context.\nOutput:\n{info['output']}",
                message,
            )
        logger.info(
            f"CUDA reports {info['used_mib']} MiB in use of {info['total_mib']} MiB on device {info['device']}."
        )

    @keyword("CUDA Device Count Should Be", tags=("GPU host", "Workload", "Assertion"))
    def cuda_device_count_should_be(self, info: dict[str, Any], expected: int, message: str | None = None) -> None:
        """Fails unless the workload saw ``expected`` CUDA devices (``info`` from `Read CUDA Memory Info Under
        HAMi-Core`).

        Example:
        | `CUDA Device Count Should Be`    ${info}    1
        """
        if info["device_count"] != expected:
            raise self.fail(
                f"the workload saw {info['device_count']} CUDA device(s), expected {expected} "
                f"(check CUDA_VISIBLE_DEVICES and the GPUs given to the container).\nOutput:\n{info['output']}",
                message,
            )
        logger.info(f"The workload saw {expected} CUDA device(s).")

    # ---------------------------------------------------------------------------------------------- internals
    @staticmethod
    def _nvidia_smi(host: HostSetup, command: list[str], env: dict[str, str]) -> str:
        log_command(command, env)
        completed = run(command, env, host.command_timeout)
        if completed.returncode != 0:
            raise HamiE2EFailure(f"`{' '.join(command)}` exited with code {completed.returncode}:\n{completed.stdout}")
        return completed.stdout


def run_workload(
    session: HostSession,
    profile: Profile,
    action: str,
    device: int = 0,
    mib: int = 0,
    seconds: float = 0,
    kind: str | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    """Runs the workload once in ``profile`` and returns its result (see `Allocate GPU Memory Under HAMi-Core`);
    ``quiet`` logs only the end of a long output."""
    host = session.require_host()
    kind = kind or host.workload
    command = in_profile(profile, workload_command(host, action, device=device, mib=mib, seconds=seconds, kind=kind))
    env = hami_env(host, profile)
    log_command(command, env)
    started = time.monotonic()
    completed = run(command, env, host.command_timeout)
    result = result_of(completed, command, started, workload=kind, action=action, profile=profile.name)
    shown = tail(completed.stdout) if quiet else completed.stdout
    logger.info(f"exit code {completed.returncode} after {result['seconds']} s; output:\n{shown}")
    return result


def _index(gpu: Any) -> int:
    return gpu.index
