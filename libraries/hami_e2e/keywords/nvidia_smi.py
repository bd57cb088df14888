"""Keywords that read nvidia-smi output (and HAMi-core's log lines in it). They take the output TEXT; fetching it
from a pod or a host is the job of other components."""

from __future__ import annotations

from robot.api import logger
from robotlibcore import keyword

from ..core.component import LibraryComponent
from ..core.errors import HamiE2EFailure
from ..parsers.nvidia_smi import (
    GpuInfo,
    NvidiaSmiReport,
    find_oom_events,
    hami_core_lines,
    hami_core_oom_problem,
    parse_nvidia_smi_report,
)
from .allocation import gpu_memory_for_percentage


class NvidiaSmiKeywords(LibraryComponent):
    """Parse and assert on nvidia-smi output: the default table, ``--query-gpu`` CSV (with or without header and
    units), ``-L`` and ``-q``. HAMi-core log lines mixed into the output are ignored by the parser and can be asserted
    on with `HAMi-Core Log Lines Should Be`."""

    # ------------------------------------------------------------------------------------------------ getters
    @keyword("Get GPU Memory Total", tags=("nvidia-smi", "Getter"))
    def get_gpu_memory_total(self, output: str, gpu: int = 0, fields: list[str] | None = None) -> int:
        """Returns memory.total in MiB of GPU ``gpu`` (nvidia-smi index) from nvidia-smi ``output``.

        Example:
        | ${card_mib}=    `Get GPU Memory Total`    ${plain_output}
        """
        return self._memory_total(self._gpu(self._parse(output, fields), gpu, output), output)

    # --------------------------------------------------------------------------------------------- assertions
    @keyword("GPU Memory Total Should Be", tags=("nvidia-smi", "Assertion"))
    def gpu_memory_total_should_be(
        self,
        output: str,
        expected_mib: int,
        gpu: int = 0,
        expected_from: str = "the HAMi memory limit",
        fields: list[str] | None = None,
        message: str | None = None,
    ) -> None:
        """Fails unless nvidia-smi ``output`` shows memory.total of GPU ``gpu`` equal to ``expected_mib`` MiB.

        Under HAMi-core memory.total is the limit (``CUDA_DEVICE_MEMORY_LIMIT``, ``nvidia.com/gpumem``), not the
        card. ``expected_from`` says where the expectation comes from, for the failure message; ``message``
        replaces the message entirely.

        Example:
        | `GPU Memory Total Should Be`    ${output}    3000    expected_from=the requested gpumem
        """
        info = self._gpu(self._parse(output, fields), gpu, output)
        actual = self._memory_total(info, output)
        if actual != expected_mib:
            raise self.fail(
                f"nvidia-smi memory.total of GPU {gpu} was {actual} MiB, expected {expected_mib} MiB "
                f"({expected_from}): {_memory_hint(actual, expected_mib)}",
                message,
            )
        logger.info(f"nvidia-smi memory.total of GPU {gpu} is {actual} MiB, as expected ({expected_from}).")

    @keyword("GPU Memory Used Should Be At Least", tags=("nvidia-smi", "Assertion"))
    def gpu_memory_used_should_be_at_least(
        self,
        output: str,
        minimum_mib: int,
        gpu: int = 0,
        fields: list[str] | None = None,
        message: str | None = None,
    ) -> None:
        """Fails unless nvidia-smi ``output`` shows memory.used of GPU ``gpu`` of at least ``minimum_mib`` MiB.

        Under HAMi-core memory.used is what the processes sharing the limit (one shared region: one container or
        pod) have allocated, the CUDA contexts counted in.

        Example:
        | `GPU Memory Used Should Be At Least`    ${output}    1800
        """
        info = self._gpu(self._parse(output, fields), gpu, output)
        if info.memory_used_mib is None:
            raise HamiE2EFailure(
                f"nvidia-smi output has no memory.used for GPU {gpu}; use the default table, '-q' or "
                "--query-gpu=...,memory.used"
            )
        if info.memory_used_mib < minimum_mib:
            raise self.fail(
                f"nvidia-smi memory.used of GPU {gpu} was {info.memory_used_mib} MiB, expected at least "
                f"{minimum_mib} MiB: memory held by another process under the same limit is not accounted "
                "(do both share one CUDA_DEVICE_MEMORY_SHARED_CACHE?)",
                message,
            )
        logger.info(f"nvidia-smi memory.used of GPU {gpu} is {info.memory_used_mib} MiB (at least {minimum_mib}).")

    @keyword("GPU Memory Total Should Match Percentage", tags=("nvidia-smi", "Assertion"))
    def gpu_memory_total_should_match_percentage(
        self,
        output: str,
        percentage: int,
        card_mib: int,
        gpu: int = 0,
        fields: list[str] | None = None,
        message: str | None = None,
    ) -> None:
        """Fails unless memory.total of GPU ``gpu`` is ``percentage`` % of a ``card_mib`` MiB card, rounded down as
        HAMi does (``card_mib * percentage // 100``), as asked with ``nvidia.com/gpumem-percentage``.

        Example:
        | ${card_mib}=    `Get GPU Memory Total`    ${plain_output}
        | `GPU Memory Total Should Match Percentage`    ${pod_output}    50    ${card_mib}
        """
        expected = gpu_memory_for_percentage(card_mib, percentage)
        self.gpu_memory_total_should_be(
            output,
            expected,
            gpu,
            expected_from=f"{percentage}% of the {card_mib} MiB card, as HAMi rounds it",
            fields=fields,
            message=message,
        )

    @keyword("GPU UUIDs Should Be", tags=("nvidia-smi", "Assertion"))
    def gpu_uuids_should_be(
        self,
        output: str,
        *expected: str,
        ignore_order: bool = True,
        fields: list[str] | None = None,
        message: str | None = None,
    ) -> None:
        """Fails unless the GPUs in nvidia-smi ``output`` have exactly the UUIDs ``expected``.

        Needs a format that prints UUIDs: ``-L``, ``-q`` or a CSV query with ``uuid``. With ``ignore_order`` (the
        default) the order does not matter.

        Example:
        | `GPU UUIDs Should Be`    ${output}    GPU-6a25c884-e747-4bc5-07d7-72e044d80133
        """
        report = self._parse(output, fields)
        actual = [g.uuid for g in report.gpus if g.uuid is not None]
        if len(actual) != len(report.gpus):
            raise HamiE2EFailure(
                f"nvidia-smi {report.format} output has no GPU UUIDs; use 'nvidia-smi -L', '-q' or a "
                "--query-gpu with uuid"
            )
        same = sorted(actual) == sorted(expected) if ignore_order else actual == list(expected)
        if not same:
            raise self.fail(
                f"nvidia-smi GPU UUIDs were {', '.join(map(str, actual))}, expected {', '.join(expected)}; "
                "compare with the pod's hami.io/vgpu-devices-allocated annotation",
                message,
            )

    @keyword("HAMi-Core OOM Should Be Reported", tags=("HAMi-core", "Assertion"))
    def hami_core_oom_should_be_reported(
        self, output: str, limit_mib: int | None = None, device: int = 0, message: str | None = None
    ) -> None:
        """Fails unless ``output`` holds HAMi-core's OOM line ``Device <device> OOM <requested bytes> / <limit
        bytes>`` with a request above the limit and, when ``limit_mib`` is given, that limit.

        HAMi-core prints it at every log level when it refuses an allocation over the limit. The same check is part
        of ``GPU Memory Allocation Should Fail With HAMi-Core OOM`` (pods) and of the GPU host tier's ``Workload
        Should Fail With HAMi-Core OOM``.

        Example:
        | `HAMi-Core OOM Should Be Reported`    ${workload_output}    limit_mib=3000
        """
        self._log_raw(output)
        problem = hami_core_oom_problem(output, limit_mib, device)
        if problem:
            raise self.fail(f"The allocation was not refused as expected: {problem}.", message)
        logger.info(f"HAMi-core refused the allocation: {find_oom_events(output)[0].line}")

    @keyword("HAMi-Core Log Lines Should Be", tags=("HAMi-core", "Assertion"))
    def hami_core_log_lines_should_be(
        self,
        output: str,
        level: str,
        expected_count: int | None = None,
        minimum: int | None = None,
        message: str | None = None,
    ) -> None:
        """Fails unless ``output`` has the given number of HAMi-core log lines of ``level`` (``Msg``, ``Warn``,
        ``ERROR``, ``Info``, ``Debug``, or ``any``): exactly ``expected_count``, or at least ``minimum``.

        Example:
        | `HAMi-Core Log Lines Should Be`    ${output}    Msg    expected_count=0
        | `HAMi-Core Log Lines Should Be`    ${output}    Debug    minimum=1
        """
        self._log_raw(output)
        lines = hami_core_lines(output, None if level.lower() == "any" else level)
        if expected_count is None and minimum is None:
            raise HamiE2EFailure("give expected_count= or minimum= to HAMi-Core Log Lines Should Be")
        shown = "\n".join(lines[:5]) or "(none)"
        if expected_count is not None and len(lines) != expected_count:
            raise self.fail(
                f"output had {len(lines)} HAMi-core {level} line(s), expected {expected_count} "
                f"(check LIBCUDA_LOG_LEVEL). First lines:\n{shown}",
                message,
            )
        if minimum is not None and len(lines) < minimum:
            raise self.fail(
                f"output had {len(lines)} HAMi-core {level} line(s), expected at least {minimum} "
                f"(check LIBCUDA_LOG_LEVEL and that libvgpu.so is preloaded). First lines:\n{shown}",
                message,
            )
        logger.info(f"{len(lines)} HAMi-core {level} line(s), as expected.")

    # ---------------------------------------------------------------------------------------------- internals
    def _parse(self, output: str, fields: list[str] | None) -> NvidiaSmiReport:
        self._log_raw(output)
        try:
            return parse_nvidia_smi_report(output, fields)
        except ValueError as error:
            raise HamiE2EFailure(f"nvidia-smi output could not be parsed: {error}") from None

    @staticmethod
    def _log_raw(output: str) -> None:
        logger.info(f"nvidia-smi / HAMi-core output:\n{output}")

    @staticmethod
    def _gpu(report: NvidiaSmiReport, index: int, output: str) -> GpuInfo:
        for gpu in report.gpus:
            if gpu.index == index:
                return gpu
        raise HamiE2EFailure(
            f"nvidia-smi shows no GPU {index}; it lists {[g.index for g in report.gpus]} ({report.format} output)"
        )

    @staticmethod
    def _memory_total(gpu: GpuInfo, output: str) -> int:
        if gpu.memory_total_mib is None:
            raise HamiE2EFailure(
                f"nvidia-smi output has no memory.total for GPU {gpu.index} ('-L' or a query without "
                "memory.total); use the default table, '-q' or --query-gpu=...,memory.total"
            )
        return gpu.memory_total_mib


def _memory_hint(actual: int, expected: int) -> str:
    if actual > expected:
        return (
            "HAMi-core limit not applied (is libvgpu.so preloaded, CUDA_DISABLE_CONTROL unset, the limit "
            "variable set and non-zero?)"
        )
    return "a smaller limit than expected (HAMi-core reads '3Gi' as 3 bytes: use m/g suffixes or MiB)"
