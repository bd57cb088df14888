"""Keywords that measure what a core limit (``CUDA_DEVICE_SM_LIMIT``) does to a sustained workload."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Literal

from robot.api import logger
from robotlibcore import keyword

from ..core.errors import HamiE2EFailure
from .protocol import protocol_fields, tail, watcher_summary
from .state import HostComponent
from .workload_keywords import run_workload

BurnWorkload = Literal["selected", "torch", "cupy", "cuda-c"]
Expectation = Literal["throttled", "unthrottled"]


class CoreLimitKeywords(HostComponent):
    """Measure the throughput ratio limited / unlimited of a sustained workload under HAMi-core's core limit."""

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
        the ratio. Both run in the current profile (host or container), each with a fresh shared region.

        Returned keys: ``ratio``, ``unlimited``, ``limited`` (TFLOP/s), ``unit``, ``sm_limit``, ``workload``,
        ``watcher`` (a one-line summary), ``summary``.

        Example:
        | ${measured}=    `Measure Core Limit Throughput Ratio`    30    seconds=6
        | `Core Limit Throughput Ratio Should Be`    ${measured}    throttled    max_ratio=0.75
        """
        host = self.session.require_host()
        kind = host.workload if workload == "selected" else workload
        current = self.session.profile()
        base = {k: v for k, v in current.variables.items() if not k.startswith("CUDA_DEVICE_SM_LIMIT")}
        base.setdefault("LIBCUDA_LOG_LEVEL", "3")
        runs = {}
        for label, extra in (("unlimited", {}), ("limited", {"CUDA_DEVICE_SM_LIMIT": str(sm_limit)})):
            profile = replace(current, variables={**base, **extra}, cache=self.session.new_cache())
            result = run_workload(self.session, profile, "burn", device=device, seconds=seconds, kind=kind, quiet=True)
            figures = protocol_fields(result["output"], "THROUGHPUT")
            if result["exit_code"] != 0 or not figures:
                raise HamiE2EFailure(
                    f"{kind} sustained workload ({label}) failed with exit code {result['exit_code']}:\n"
                    + tail(result["output"])
                )
            runs[label] = (float(figures["value"]), figures.get("unit", ""), result["output"])
        unlimited, limited = runs["unlimited"][0], runs["limited"][0]
        ratio = limited / unlimited if unlimited > 0 else float("nan")
        watcher = watcher_summary(runs["limited"][2], device)
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

    @keyword("Core Limit Throughput Ratio Should Be", tags=("GPU host", "Workload", "Assertion"))
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
        figures = (
            f"throughput ratio {ratio:.3f} (limited {measured['limited']:.1f} / unlimited "
            f"{measured['unlimited']:.1f} {measured['unit']})"
        )
        if expectation == "throttled" and not ratio <= max_ratio:
            raise self.fail(
                f"CUDA_DEVICE_SM_LIMIT={measured['sm_limit']} did not throttle the {measured['workload']} workload: "
                f"{figures}, expected at most {max_ratio}. HAMi-core watcher: {measured['watcher']}",
                message,
            )
        if expectation == "unthrottled" and not ratio >= min_ratio:
            raise self.fail(
                f"CUDA_DEVICE_SM_LIMIT={measured['sm_limit']} throttled the {measured['workload']} workload: "
                f"{figures}, expected at least {min_ratio}. HAMi-core watcher: {measured['watcher']}",
                message,
            )
        logger.info(f"Core limit ratio {ratio:.3f} meets the expectation '{expectation}'.")
