"""The simulated GPU end to end, as processes on this machine (no Kubernetes): real nvidia-smi and real HAMi-core
over the mock NVML and our CUDA driver, with the numbers measured inside real containers on an H100.

Each check names the fault that makes it fail. The first run builds the pieces into the cache (about a minute).
"""

from __future__ import annotations

import os
import re
import selectors
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest

from sandbox.gpu import Gpu, GpuSim, ensure_all, write_profile

UUID_0 = "GPU-6a25c884-e747-4bc5-07d7-72e044d80133"  # the captured H100's
UUID_1 = "GPU-2b6f0c1e-1d2a-4c3b-9e8f-0a1b2c3d4e5f"
CARD_MIB = 81559
LIMIT_BYTES = 3000 << 20  # 3145728000, as HAMi-core prints the limit
CONTEXT_MIB = 518  # an H100's CUDA context, charged by HAMi-core against the limit
TIMEOUT = 60


@pytest.fixture(scope="module")
def sim() -> GpuSim:
    return ensure_all()


@pytest.fixture
def node(tmp_path: Path) -> Path:
    """A node: its one-H100 profile and the process directory our driver publishes to."""
    (tmp_path / "processes").mkdir()
    write_profile(tmp_path / "nvml" / "config.yaml", [Gpu(0, UUID_0)])
    return tmp_path


def gpu_env(sim: GpuSim, node: Path, limits: dict[str, str], cache: str = "container-a.cache", *,
            hami_core: bool = True, profile: str = "nvml/config.yaml") -> dict[str, str]:
    container = {**limits, "CUDA_DEVICE_MEMORY_SHARED_CACHE": str(node / cache)}
    return sim.process_env(node / profile, container, process_dir=node / "processes", hami_core=hami_core,
                           base={"PATH": os.environ["PATH"]})


def run(argv: list[str | Path], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(arg) for arg in argv], env=env, capture_output=True, text=True, timeout=TIMEOUT)


def fields(stdout: str, kind: str) -> list[dict[str, str]]:
    """The key=value fields of gpu-workload's lines of one kind."""
    return [dict(re.findall(r'(\w+)="?([^" ]*)', line)) for line in stdout.splitlines() if line.startswith(kind + " ")]


@pytest.fixture
def limit_3000(sim: GpuSim, node: Path) -> dict[str, str]:
    return gpu_env(sim, node, {"CUDA_DEVICE_MEMORY_LIMIT": "3000m", "CUDA_DEVICE_SM_LIMIT": "30"})


def test_query_shows_the_uuid_and_the_limit(sim: GpuSim, limit_3000: dict[str, str]) -> None:
    # Fault: HAMi-core's NVML hook not applied (no preload, wrong library) -> 81559.
    result = run([sim.nvidia_smi, "--query-gpu=uuid,memory.total", "--format=csv,noheader,nounits"], limit_3000)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{UUID_0}, 3000"


def test_list_shows_the_one_gpu(sim: GpuSim, limit_3000: dict[str, str]) -> None:
    # Fault: a profile with other GPUs, or the mock's default 8 A100s when the profile cannot be read.
    result = run([sim.nvidia_smi, "-L"], limit_3000)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines() == [f"GPU 0: NVIDIA H100 80GB HBM3 (UUID: {UUID_0})"]


def test_table_shows_the_limit_as_total(sim: GpuSim, limit_3000: dict[str, str]) -> None:
    result = run([sim.nvidia_smi], limit_3000)
    assert result.returncode == 0, result.stderr
    assert "Driver Version: 580.159.04" in result.stdout and "CUDA Version: 13.0" in result.stdout
    assert re.findall(r"(\d+)MiB\s*/\s*(\d+)MiB", result.stdout) == [("0", "3000")]


def test_detailed_query_runs_and_shows_the_limit(sim: GpuSim, limit_3000: dict[str, str]) -> None:
    # Fault: the mock without our guard patch -> nvidia-smi 535 dies with SIGSEGV (rc -11) in plain -q.
    full = run([sim.nvidia_smi, "-q"], limit_3000)
    assert full.returncode == 0, f"nvidia-smi -q exited {full.returncode}: {full.stderr[-500:]}"
    assert re.search(r"Attached GPUs\s*:\s*1", full.stdout)
    memory = run([sim.nvidia_smi, "-q", "-d", "MEMORY"], limit_3000)
    assert memory.returncode == 0, memory.stderr
    fb = memory.stdout.split("FB Memory Usage", 1)[1]
    assert re.search(r"Total\s*:\s*(\d+) MiB", fb).group(1) == "3000"  # type: ignore[union-attr]


def test_workload_sees_the_limit_minus_its_context(sim: GpuSim, limit_3000: dict[str, str]) -> None:
    # The real H100 container: 3000 total, 2482 free. Fault: no context charged (mock NVML without our process
    # patches, or MOCK_NVML_PROCESS_DIR unset) -> 3000 free.
    result = run([sim.workload, "meminfo"], limit_3000)
    assert result.returncode == 0, result.stderr
    (info,) = fields(result.stdout, "meminfo")
    assert (info["total_mib"], info["free_mib"]) == ("3000", str(3000 - CONTEXT_MIB))


def test_workload_allocates_under_the_limit_and_is_refused_over_it(sim: GpuSim, limit_3000: dict[str, str]) -> None:
    small = run([sim.workload, "alloc", "1000"], limit_3000)
    assert small.returncode == 0, small.stderr
    assert fields(small.stdout, "done") == [{"allocated_mib": "1000"}]
    big = run([sim.workload, "alloc", "4000"], limit_3000)
    assert big.returncode == 2, f"expected the OOM exit code 2, got {big.returncode}: {big.stdout}{big.stderr}"
    oom = re.search(r"\[HAMI-core ERROR .*\]: Device 0 OOM (\d+) / (\d+)", big.stderr)
    assert oom, f"no HAMi-core OOM line in:\n{big.stderr}"
    # 4000 MiB asked + the 518 MiB context, over 3000 MiB: the very line a real H100 container printed.
    assert (int(oom.group(1)), int(oom.group(2))) == ((4000 + CONTEXT_MIB) << 20, LIMIT_BYTES)
    assert fields(big.stdout, "oom")[0]["error"] == "CUDA_ERROR_OUT_OF_MEMORY"


def first_line(proc: subprocess.Popen[bytes], prefixes: tuple[str, ...]) -> str:
    """The first stdout line of ``proc`` starting with one of ``prefixes``; "" at its exit or after TIMEOUT."""
    assert proc.stdout is not None
    deadline = time.monotonic() + TIMEOUT
    pending = ""
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        while selector.select(timeout=max(0.0, deadline - time.monotonic())):
            chunk = os.read(proc.stdout.fileno(), 4096).decode()
            if not chunk:
                return ""
            *lines, pending = (pending + chunk).split("\n")
            for line in lines:
                if line.startswith(prefixes):
                    return line
    return ""


@pytest.fixture
def holder(sim: GpuSim, node: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A process of container A holding 2000 MiB under a 3000 MiB limit; stopped by pid at the end."""
    env = gpu_env(sim, node, {"CUDA_DEVICE_MEMORY_LIMIT": "3000m"})
    proc = subprocess.Popen([str(sim.workload), "alloc", "2000", "--hold", "60"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        line = first_line(proc, ("hold ", "oom ", "failed "))
        assert line.startswith("hold "), f"the holder did not get its memory: {line!r}"
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=TIMEOUT)


def test_processes_of_one_container_share_its_limit(sim: GpuSim, node: Path,
                                                   holder: subprocess.Popen[bytes]) -> None:
    # Fault: a shared-region file per process -> the second process gets its own 3000 MiB.
    second = run([sim.workload, "alloc", "1000"], gpu_env(sim, node, {"CUDA_DEVICE_MEMORY_LIMIT": "3000m"}))
    assert second.returncode == 2, second.stdout + second.stderr
    oom = re.search(r"Device 0 OOM (\d+) / (\d+)", second.stderr)
    assert oom, second.stderr
    # holder 518 + 2000, this process 518 + 1000 (both contexts charged: the v1 process-list patch at work)
    assert int(oom.group(1)) == (2 * CONTEXT_MIB + 3000) << 20


def test_another_container_has_its_own_limit(sim: GpuSim, node: Path, holder: subprocess.Popen[bytes]) -> None:
    # Fault: containers sharing one shared-region file -> refused like the test above.
    other = run([sim.workload, "alloc", "1000"],
                gpu_env(sim, node, {"CUDA_DEVICE_MEMORY_LIMIT": "3000m"}, cache="container-b.cache"))
    assert other.returncode == 0, other.stdout + other.stderr
    (info,) = fields(other.stdout, "meminfo")
    assert info["free_mib"] == str(3000 - CONTEXT_MIB - 1000)


def test_without_hami_core_the_limit_is_not_seen(sim: GpuSim, node: Path) -> None:
    # The fault proof of the tests above: the same container env without libvgpu.so shows the whole card.
    env = gpu_env(sim, node, {"CUDA_DEVICE_MEMORY_LIMIT": "3000m"}, hami_core=False)
    query = run([sim.nvidia_smi, "--query-gpu=uuid,memory.total", "--format=csv,noheader,nounits"], env)
    assert query.stdout.strip() == f"{UUID_0}, {CARD_MIB}"
    big = run([sim.workload, "alloc", "4000"], env)
    assert big.returncode == 0 and "HAMI-core" not in big.stderr, big.stdout + big.stderr
    (info,) = fields(big.stdout, "meminfo")
    assert info["total_mib"] == str(CARD_MIB)


def test_two_gpus_each_have_their_own_limit(sim: GpuSim, node: Path) -> None:
    write_profile(node / "two" / "config.yaml", [Gpu(0, UUID_0), Gpu(1, UUID_1)])
    env = gpu_env(sim, node, {"CUDA_DEVICE_MEMORY_LIMIT_0": "3000m", "CUDA_DEVICE_MEMORY_LIMIT_1": "5g"},
                  profile="two/config.yaml")
    query = run([sim.nvidia_smi, "--query-gpu=index,uuid,memory.total", "--format=csv,noheader,nounits"], env)
    assert query.stdout.strip().splitlines() == [f"0, {UUID_0}, 3000", f"1, {UUID_1}, 5120"]
    meminfo = run([sim.workload, "meminfo"], env)
    assert meminfo.returncode == 0, meminfo.stderr
    assert [(i["device"], i["total_mib"]) for i in fields(meminfo.stdout, "meminfo")] == [("0", "3000"), ("1", "5120")]
    over = run([sim.workload, "alloc", "3000", "--device", "1"], env)  # fits 5120 on GPU 1, not 3000 on GPU 0
    assert over.returncode == 0, over.stdout + over.stderr


def test_driver_functions_it_does_not_simulate_fail_clearly(sim: GpuSim, node: Path) -> None:
    # A stub HAMi-core resolves: without it HAMi-core would call a NULL pointer.
    env = gpu_env(sim, node, {}, hami_core=False)
    code = ("import ctypes, sys; lib = ctypes.CDLL('libcuda.so.1'); "
            "print(lib.cuInit(0), lib.cuMemcpyHtoD_v2(0, 0, 0), lib.cuGetExportTable(0, 0))")
    result = run(["python3", "-c", code], env)
    assert result.stdout.split() == ["0", "801", "801"], result.stdout + result.stderr
    assert "cuMemcpyHtoD_v2 is not simulated: CUDA_ERROR_NOT_SUPPORTED" in result.stderr


def test_a_gpu_failed_with_nvml_mock_ctl_is_lost_until_reset(sim: GpuSim, limit_3000: dict[str, str],
                                                             node: Path) -> None:
    ctl = [sim.nvml_ctl, "--config", node / "nvml" / "config.yaml", "--file", node / "nvml" / "overrides.yaml"]
    query = [sim.nvidia_smi, "--query-gpu=uuid,memory.total", "--format=csv,noheader,nounits"]
    assert run([*ctl, "fail", "--gpu", "0", "--mode", "lost"], limit_3000).returncode == 0
    assert run(query, limit_3000).stdout.strip() == f"{UUID_0}, [GPU is lost]"
    lost = run([sim.workload, "meminfo"], limit_3000)
    assert lost.returncode == 3 and "error call=cuInit code=100 name=CUDA_ERROR_NO_DEVICE" in lost.stderr, lost.stderr
    assert run([*ctl, "reset"], limit_3000).returncode == 0
    assert run(query, limit_3000).stdout.strip() == f"{UUID_0}, 3000"


def test_cuda_visible_devices_selects_by_index_or_uuid(sim: GpuSim, node: Path) -> None:
    write_profile(node / "two" / "config.yaml", [Gpu(0, UUID_0), Gpu(1, UUID_1, memory_mib=40960)])
    for visible in ("1", UUID_1[:12]):
        env = {**gpu_env(sim, node, {}, hami_core=False, profile="two/config.yaml"), "CUDA_VISIBLE_DEVICES": visible}
        result = run([sim.workload, "meminfo"], env)
        assert [(i["device"], i["uuid"], i["total_mib"]) for i in fields(result.stdout, "meminfo")] == [
            ("0", UUID_1, "40960")], result.stdout + result.stderr


def test_workload_refuses_a_hold_over_its_bound(sim: GpuSim, limit_3000: dict[str, str]) -> None:
    result = run([sim.workload, "alloc", "10", "--hold", "601"], limit_3000)
    assert result.returncode == 64 and "--hold SECONDS (<= 600)" in result.stderr
