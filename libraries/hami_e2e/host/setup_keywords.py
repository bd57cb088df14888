"""Keywords that prepare the GPU host and say where and how the next processes run: on the host with some HAMi-core
variables, or as a container given some GPUs."""

from __future__ import annotations

import shutil
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from robot.api import SkipExecution, logger
from robotlibcore import keyword

from ..core.errors import HamiE2EFailure
from . import discovery
from .processes import plain_env, run, stop_background
from .state import HostComponent, HostSetup, Profile

WorkloadKind = Literal["auto", "torch", "cupy", "cuda-c"]


class HostSetupKeywords(HostComponent):
    """Prepare the GPU host (`Prepare GPU Host`), then say how the next processes run: `Set HAMi-Core Environment`
    (on the host, every GPU visible) or `Set Up Container Given GPUs` (as a container that was given some GPUs: only
    those exist for the process, NVML included). `Clean Up HAMi-Core Processes` ends a test."""

    @keyword("Prepare GPU Host", tags=("GPU host", "Setup"))
    def prepare_gpu_host(
        self,
        libvgpu: str,
        workload: WorkloadKind = "auto",
        workload_python: str = "",
        preload: bool = True,
        hami_core_commit: str = "",
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
        | ``hami_core_commit`` | The HAMi-core commit ``libvgpu.so`` was built from, for the report (the library does not carry it). |
        | ``command_timeout`` | Limit for one nvidia-smi or workload run. |
        | ``ready_timeout`` | How long a background workload may take to hold its memory. |

        Returned keys: ``target``, ``gpu_model``, ``gpu_count``, ``card_mib``, ``gpu_uuids``, ``driver_version``,
        ``cuda_version``, ``libvgpu``, ``libvgpu_sha256``, ``hami_core_commit``, ``workload``, ``workload_kind``,
        ``preload``, ``isolation`` (how containers are imitated, or why they cannot be).

        Example:
        | ${host}=    `Prepare GPU Host`    ${LIBVGPU}    workload=${WORKLOAD_KIND}
        | Set Suite Metadata    GPU Model    ${host}[gpu_model]
        """
        nvidia_smi = shutil.which("nvidia-smi")
        if nvidia_smi is None:
            raise SkipExecution("No GPU host: nvidia-smi is not on PATH, so there is no NVIDIA driver here.")
        plain = run([nvidia_smi], plain_env(), command_timeout)
        if plain.returncode != 0:
            raise SkipExecution(f"No usable GPU: nvidia-smi exited {plain.returncode}: {plain.stdout.strip()[:300]}")
        library = Path(libvgpu).expanduser()
        if not library.is_file():
            raise SkipExecution(
                f"No HAMi-core: libvgpu.so not found at {library} (set LIBVGPU, e.g. "
                "--variable LIBVGPU:/usr/local/vgpu/libvgpu.so)."
            )
        gpus, driver, cuda = discovery.host_gpus(nvidia_smi, plain.stdout, command_timeout)
        if not gpus:
            raise SkipExecution("No GPU: nvidia-smi lists none.")
        host = HostSetup(
            libvgpu=library.resolve(),
            libvgpu_sha256=discovery.sha256(library),
            hami_core_commit=hami_core_commit,
            preload=preload,
            workdir=Path(tempfile.mkdtemp(prefix="hami-e2e-host-")),
            nvidia_smi=nvidia_smi,
            gpus=gpus,
            driver_version=driver,
            cuda_version=cuda,
            command_timeout=command_timeout,
            ready_timeout=ready_timeout,
            isolation=discovery.isolation_problem(),
            nvcc=discovery.find_nvcc(),
        )
        self.session.host = host
        discovery.choose_workload(host, workload, workload_python)
        facts = host.facts()
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
        host = self.session.require_host()
        if host.gpu_count < minimum:
            raise SkipExecution(
                f"Needs {minimum} GPUs; this host has {host.gpu_count} ({host.gpus[0].name}). Run on a multi-GPU host."
            )

    @keyword("Require CUDA Compiler", tags=("GPU host", "Setup"))
    def require_cuda_compiler(self) -> None:
        """Skips the current test unless nvcc is available to build the CUDA C workload.

        Example:
        | `Require CUDA Compiler`
        """
        if self.session.require_host().nvcc is None:
            raise SkipExecution("Needs nvcc (CUDA toolkit) to build the CUDA C workload; none found on PATH.")

    @keyword("Set HAMi-Core Environment", tags=("GPU host", "Setup"))
    def set_hami_core_environment(self, **variables: str) -> None:
        """Runs the next processes of this test on the host (every GPU visible to NVML) with these HAMi-core
        variables, replacing earlier ones. Every call also gets a fresh shared-region file
        (``CUDA_DEVICE_MEMORY_SHARED_CACHE``), so processes started after one call share one limit, as the
        containers of one pod do.

        ``CUDA_VISIBLE_DEVICES`` can be given here, but it hides GPUs from CUDA only, not from NVML: for "a
        container that was given GPU k" use `Set Up Container Given GPUs`.

        Example:
        | `Set HAMi-Core Environment`    CUDA_DEVICE_MEMORY_LIMIT=3000m    LIBCUDA_LOG_LEVEL=1
        """
        self.session.require_host()
        profile = Profile("host", {name: str(value) for name, value in variables.items()}, self.session.new_cache())
        self.session.profiles["host"] = profile
        self.session.current = profile
        logger.info(f"Next processes run {profile.describe()}")

    @keyword("Set Up Container Given GPUs", tags=("GPU host", "Setup", "Container"))
    def set_up_container_given_gpus(self, name: str, gpus: str, **variables: str) -> None:
        """Runs the next processes of this test as container ``name`` that was given the host GPUs ``gpus`` (NVML
        indexes, comma-separated: ``1`` or ``0,1``), with these HAMi-core variables and a shared region of its own.

        Such a process sees only those GPUs, numbered from 0 in the host's order, in CUDA and in NVML (nvidia-smi):
        it runs in a private mount namespace whose ``/dev`` holds only their device nodes (see
        ``tools/workloads/gpu_container.py``). So name the limits as HAMi's device plugin does, by the container's
        own index: ``CUDA_DEVICE_MEMORY_LIMIT_0`` is the first GPU given. `Use Container` switches back to a
        container set up earlier in the test. Skips the test where containers cannot be imitated (not root).

        Example:
        | `Set Up Container Given GPUs`    pod-a    1    CUDA_DEVICE_MEMORY_LIMIT_0=2g
        """
        host = self.session.require_host()
        if host.isolation:
            raise SkipExecution(f"A container given some GPUs cannot be imitated on this host: {host.isolation}.")
        try:
            chosen = [host.gpu(int(part)) for part in gpus.replace(" ", "").split(",") if part]
        except ValueError:
            raise HamiE2EFailure(
                f"GPUs must be NVML indexes separated by commas, like 1 or 0,1; got {gpus!r}."
            ) from None
        if not chosen:
            raise HamiE2EFailure("A container needs at least one GPU.")
        profile = Profile(name, {k: str(v) for k, v in variables.items()}, self.session.new_cache(), chosen)
        self.session.profiles[name] = profile
        self.session.current = profile
        logger.info(f"Next processes run {profile.describe()}")

    @keyword("Use Container", tags=("GPU host", "Setup", "Container"))
    def use_container(self, name: str) -> None:
        """Runs the next processes in container ``name`` again (set up earlier in this test with `Set Up Container
        Given GPUs`), with its variables and shared region.

        Example:
        | `Use Container`    pod-a
        """
        if name not in self.session.profiles or self.session.profiles[name].gpus is None:
            known = [n for n, p in self.session.profiles.items() if p.gpus is not None]
            raise HamiE2EFailure(f"No container {name!r} was set up in this test; there are: {known or 'none'}.")
        self.session.current = self.session.profiles[name]
        logger.info(f"Next processes run {self.session.current.describe()}")

    @keyword("Clean Up HAMi-Core Processes", tags=("GPU host", "Teardown"))
    def clean_up_hami_core_processes(self) -> None:
        """Stops the workloads this test left running and forgets its environments and containers (test teardown).

        Example:
        | [Teardown]    `Clean Up HAMi-Core Processes`
        """
        errors = []
        for item in reversed(self.session.background):
            try:
                stop_background(item)
            except Exception as error:  # noqa: BLE001 - every process gets its turn
                errors.append(f"{item.description}: {error}")
        self.session.background = []
        self.session.profiles = {}
        self.session.current = None
        if errors:
            raise HamiE2EFailure("Could not stop: " + "; ".join(errors))
