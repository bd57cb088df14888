"""Keywords that allocate GPU memory inside a pod to see HAMi-core enforce its limit."""

from __future__ import annotations

from robot.api import logger
from robot.api.deco import keyword

from ..core.commands import CommandResult
from ..core.component import LibraryComponent
from ..parsers.nvidia_smi import find_oom_events, hami_core_oom_problem
from .exec import run_in_pod

#: PyTorch probe that allocates N MiB on the first visible GPU; HAMi-core makes it fail above the limit.
PYTORCH_PROBE = (
    "import sys, torch\n"
    "mib = int(sys.argv[1])\n"
    "block = torch.empty(mib * 1024 * 1024, dtype=torch.uint8, device='cuda')\n"
    "torch.cuda.synchronize()\n"
    "print(f'allocated {mib} MiB')\n"
)


class AllocationProbeKeywords(LibraryComponent):
    """Allocations in a pod's container under HAMi-core: below the limit they work, above it HAMi-core refuses
    them. The probe is the one `Configure Workload Defaults` chose: PyTorch (the image must have PyTorch with CUDA,
    ``${PYTORCH_IMAGE}``) or, on the sandbox, ``gpu-workload alloc <MiB>`` (CUDA driver API)."""

    def _allocate(self, pod: str, mib: int, container: str | None, namespace: str | None) -> CommandResult:
        """Allocates ``mib`` MiB in the container (any exit status), waiting up to the default timeout."""
        if self.ctx.workload.allocation_probe == "gpu-workload":
            argv = ["gpu-workload", "alloc", str(mib)]
        else:
            argv = ["python3", "-c", PYTORCH_PROBE, str(mib)]
        return run_in_pod(self.ctx, pod, self.namespace(namespace), argv, container, self.ctx.default_timeout)

    @keyword("Allocate GPU Memory In Pod", tags=("Pod", "Exec", "HAMi"))
    def allocate_gpu_memory_in_pod(
        self, pod: str | None, mib: int, container: str | None = None, namespace: str | None = None
    ) -> CommandResult:
        """Allocates ``mib`` MiB of device memory in the container and returns the `Exec In Pod` result (``rc``,
        ``stdout``, ``stderr``) without judging it.

        For checks of their own on the output, e.g. with `HAMi-Core OOM Should Be Reported`; the two assertions
        below cover the usual cases.

        Example:
        | ${result} =    `Allocate GPU Memory In Pod`    probe    2500
        | `HAMi-Core OOM Should Be Reported`    ${result.stderr}    limit_mib=2000
        """
        return self._allocate(self.pod_name(pod), mib, container, namespace)

    @keyword("GPU Memory Allocation Should Succeed", tags=("Pod", "Exec", "HAMi", "Assertion"))
    def gpu_memory_allocation_should_succeed(
        self,
        pod: str | None,
        mib: int,
        container: str | None = None,
        namespace: str | None = None,
        message: str | None = None,
    ) -> None:
        """Fails unless allocating ``mib`` MiB in the container works (exit 0, no HAMi-core OOM line).

        Example:
        | `GPU Memory Allocation Should Succeed`    probe    1000
        """
        pod_name = self.pod_name(pod)
        result = self._allocate(pod_name, mib, container, namespace)
        if result.rc != 0 or find_oom_events(result.stderr + "\n" + result.stdout):
            raise self.fail(
                f"Allocating {mib} MiB in pod {pod_name} failed (rc={result.rc}); expected success below the limit. "
                f"stderr: {result.stderr.strip()[-800:]!r}",
                message,
            )

    @keyword("GPU Memory Allocation Should Fail With HAMi-Core OOM", tags=("Pod", "Exec", "HAMi", "Assertion"))
    def gpu_memory_allocation_should_fail_with_hami_core_oom(
        self,
        pod: str | None,
        mib: int,
        limit_mib: int | None = None,
        container: str | None = None,
        namespace: str | None = None,
        message: str | None = None,
    ) -> None:
        """Fails unless allocating ``mib`` MiB fails with HAMi-core's ``Device <n> OOM <requested> / <limit>`` line.

        With ``limit_mib`` the ``<limit>`` bytes in that line must equal ``limit_mib`` × 1048576, i.e. HAMi-core
        enforced exactly the pod's ``gpumem``.

        Example:
        | `GPU Memory Allocation Should Fail With HAMi-Core OOM`    probe    4000    limit_mib=3000
        """
        pod_name = self.pod_name(pod)
        result = self._allocate(pod_name, mib, container, namespace)
        stderr = f"stderr: {result.stderr.strip()[-800:]!r}"
        if result.rc == 0:
            raise self.fail(
                f"Allocating {mib} MiB in pod {pod_name} succeeded (rc=0); expected HAMi-core to refuse it with "
                f"'[HAMI-core ERROR … Device <n> OOM …]'. {stderr}",
                message,
            )
        output = result.stderr + "\n" + result.stdout
        problem = hami_core_oom_problem(output, limit_mib)
        if problem:
            raise self.fail(
                f"Allocating {mib} MiB in pod {pod_name} failed (rc={result.rc}) but {problem}. {stderr}", message
            )
        logger.info(f"HAMi-core in pod {pod_name} refused {mib} MiB: {find_oom_events(output)[0].line}")
