"""Tests of the GPU host keywords without a GPU: a fake nvidia-smi and a fake workload interpreter on a temporary
PATH stand in for the driver and for PyTorch, and behave as HAMi-core does when LD_PRELOAD names libvgpu.so."""

from __future__ import annotations

import hashlib
import os
import stat
import sys
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest
from robot.api import SkipExecution

from hami_keywords.context import Context
from hami_keywords.errors import HamiE2EFailure
from hami_keywords.hami_core_host import HamiCoreHostKeywords, _protocol, _watcher_summary

# The fake behaves like HAMi-core 8f3a89c on an H100: limits from CUDA_DEVICE_MEMORY_LIMIT[_0] with m/g suffixes, a
# 518 MiB context counted as usage, the OOM line on stderr, the shared region file shared between processes.
FAKE_COMMON = textwrap.dedent(
    """\
    import os, sys
    CARD = 81559
    def limit_mib(dev=0):
        if "libvgpu" not in os.environ.get("LD_PRELOAD", ""):
            return None
        raw = os.environ.get(f"CUDA_DEVICE_MEMORY_LIMIT_{dev}") or os.environ.get("CUDA_DEVICE_MEMORY_LIMIT")
        if not raw:
            return None
        scale = {"m": 1, "g": 1024}.get(raw[-1].lower())
        return int(raw[:-1]) * scale if scale else max(1, int(''.join(c for c in raw if c.isdigit())) // 1048576)
    def hami(msg):
        if "libvgpu" in os.environ.get("LD_PRELOAD", "") and os.environ.get("LIBCUDA_LOG_LEVEL", "2") not in ("0", "1"):
            print(f"[HAMI-core Msg(1:2:libvgpu.c:871)]: {msg}", file=sys.stderr, flush=True)
    def used_mib():
        cache = os.environ.get("CUDA_DEVICE_MEMORY_SHARED_CACHE")
        try:
            return int(open(cache).read() or 0)
        except (OSError, TypeError, ValueError):
            return 0
    """
)

FAKE_NVIDIA_SMI = FAKE_COMMON + textwrap.dedent(
    """\
    total = limit_mib() or CARD
    used = used_mib()
    hami("Initializing.....")
    args = sys.argv[1:]
    if not args:
        print("| NVIDIA-SMI 580.159.04             Driver Version: 580.159.04     CUDA Version: 13.0     |")
        print("+-----------------------------------------+------------------------+----------------------+")
        print("|=========================================+========================+======================|")
        print("|   0  NVIDIA H100 80GB HBM3          On  |   00000000:00:06.0 Off |                    0 |")
        print(f"| N/A   31C    P0             68W /  700W |  {used:6d}MiB / {total:6d}MiB |      0%      Default |")
        print("+-----------------------------------------+------------------------+----------------------+")
    elif "--format=csv" in args:
        print("index, uuid, name, memory.total [MiB], memory.used [MiB], memory.free [MiB]")
        print(f"0, GPU-1, NVIDIA H100 80GB HBM3, {total} MiB, {used} MiB, {total - used} MiB")
    elif "--format=csv,noheader,nounits" in args:
        print(f"0, GPU-1, NVIDIA H100 80GB HBM3, {total}, {used}, {total - used}")
    elif args[0] == "-L":
        print("GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-1)")
    else:
        print("==============NVSMI LOG==============")
        print("Driver Version                                         : 580.159.04")
        print("CUDA Version                                           : 13.0")
        print("Attached GPUs                                          : 1")
        print("GPU 00000000:00:06.0")
        print("    FB Memory Usage")
        print(f"        Total                                          : {total} MiB")
        print(f"        Used                                           : {used} MiB")
        print(f"        Free                                           : {total - used} MiB")
    """
)

FAKE_PYTHON = FAKE_COMMON + textwrap.dedent(
    """\
    import signal, time
    args = sys.argv[1:]
    if args[0] == "-c":
        print("2.11.0+fake")
        sys.exit(0)
    action, device = args[1], int(args[args.index("--device") + 1])
    mib = int(args[args.index("--mib") + 1]) if "--mib" in args else 0
    print("WORKLOAD kind=torch version=2.11.0+fake", flush=True)
    hami("Initializing.....")
    limit = limit_mib(device)
    if action == "info":
        print("DEVICES count=1")
        print(f"MEMINFO device={device} total_mib={limit or CARD} free_mib={(limit or CARD) - 518}")
    elif action in ("alloc", "hold"):
        want = used_mib() + 518 + mib
        if limit is not None and want > limit:
            print(f"[HAMI-core ERROR (pid:1 thread=2 allocator.c:52)]: Device {device} OOM {want * 1048576} / "
                  f"{limit * 1048576}", file=sys.stderr, flush=True)
            print(f"ALLOC_FAILED device={device} mib={mib} reason=oom error=CUDA out of memory.")
            sys.exit(2)
        if action == "alloc":
            print(f"ALLOC_OK device={device} mib={mib}")
        else:
            cache = os.environ["CUDA_DEVICE_MEMORY_SHARED_CACHE"]
            open(cache, "w").write(str(518 + mib))
            stop = []
            signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
            print(f"HOLDING device={device} mib={mib}", flush=True)
            while not stop:
                time.sleep(0.02)
            open(cache, "w").write("0")
            print(f"RELEASED device={device} mib={mib}")
    elif action == "burn":
        limited = "libvgpu" in os.environ.get("LD_PRELOAD", "") and os.environ.get("CUDA_DEVICE_SM_LIMIT")
        value = 100.0 * (int(limited) / 100 + 0.1 if limited else 1)
        print(f"[HAMI-core Info(1:2:multiprocess_utilization_watcher.c:1)]: device 0: userutil=90 currentcores=-5 "
              f"total=10 limit=30 share=0", file=sys.stderr)
        print(f"THROUGHPUT device={device} value={value:.3f} unit=TFLOP/s seconds=0.1 iterations=10")
    """
)


def _find_libm() -> str | None:
    import ctypes.util

    name = ctypes.util.find_library("m")
    for folder in ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib/aarch64-linux-gnu"):
        if name and Path(folder, name).is_file():
            return str(Path(folder, name))
    return None


LIBM = _find_libm()


def _script(path: Path, body: str) -> Path:
    path.write_text(f"#!{sys.executable}\n{body}")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


@pytest.fixture
def fake_host(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _script(bin_dir / "nvidia-smi", FAKE_NVIDIA_SMI)
    python = _script(bin_dir / "fake-python", FAKE_PYTHON)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("CUDA_DEVICE_MEMORY_LIMIT", "1m")  # a tester's shell must not leak into the tests
    # Preloading must not disturb the fakes: a harmless real library (libm) under the name libvgpu.so, if found.
    libvgpu = tmp_path / "libvgpu.so"
    libvgpu.write_bytes(Path(LIBM).read_bytes() if LIBM else b"not really a library")
    return {"libvgpu": str(libvgpu), "python": str(python)}


@pytest.fixture
def host(fake_host):
    keywords = HamiCoreHostKeywords(Context())
    facts = keywords.prepare_gpu_host(
        fake_host["libvgpu"], workload="torch", workload_python=fake_host["python"], ready_timeout=timedelta(seconds=20)
    )
    yield keywords, facts
    keywords.clean_up_hami_core_processes()


def test_prepare_reports_the_facts_for_the_metadata(host) -> None:
    _, facts = host
    assert facts["gpu_model"] == "NVIDIA H100 80GB HBM3"
    assert (facts["driver_version"], facts["cuda_version"], facts["card_mib"]) == ("580.159.04", "13.0", 81559)
    assert facts["libvgpu_sha256"] == hashlib.sha256(Path(facts["libvgpu"]).read_bytes()).hexdigest()
    assert facts["workload"] == "torch 2.11.0+fake"
    assert facts["target"] == "GPU host"


def test_prepare_skips_without_libvgpu(fake_host, tmp_path) -> None:
    with pytest.raises(SkipExecution, match="libvgpu.so not found at .*nowhere"):
        HamiCoreHostKeywords(Context()).prepare_gpu_host(str(tmp_path / "nowhere" / "libvgpu.so"))


def test_prepare_skips_without_nvidia_smi(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SkipExecution, match="nvidia-smi is not on PATH"):
        HamiCoreHostKeywords(Context()).prepare_gpu_host("/usr/local/vgpu/libvgpu.so")


def test_keywords_need_a_prepared_host() -> None:
    with pytest.raises(HamiE2EFailure, match="not prepared: run the folder"):
        HamiCoreHostKeywords(Context()).run_nvidia_smi_under_hami_core()


def test_nvidia_smi_sees_the_limit_only_with_hami_core(host) -> None:
    keywords, _ = host
    keywords.set_hami_core_environment(CUDA_DEVICE_MEMORY_LIMIT="3000m")
    for fmt in ("table", "csv", "csv-noheader", "query", "query-memory"):
        assert "3000" in keywords.run_nvidia_smi_under_hami_core(fmt), fmt
    plain = keywords.run_nvidia_smi_without_hami_core("csv")
    assert "81559 MiB" in plain and "HAMI-core" not in plain


def test_inherited_hami_variables_do_not_leak(host) -> None:
    keywords, _ = host
    keywords.set_hami_core_environment()
    assert "81559 MiB" in keywords.run_nvidia_smi_under_hami_core("csv")


def test_allocation_under_and_over_the_limit(host) -> None:
    keywords, _ = host
    keywords.set_hami_core_environment(CUDA_DEVICE_MEMORY_LIMIT="3000m")
    ok = keywords.allocate_gpu_memory_under_hami_core(1000)
    keywords.workload_should_succeed(ok)
    refused = keywords.allocate_gpu_memory_under_hami_core(4000)
    keywords.workload_should_fail_with_hami_core_oom(refused, limit_mib=3000)
    with pytest.raises(HamiE2EFailure, match="failed with exit code 2, expected success. HAMi-core refused it"):
        keywords.workload_should_succeed(refused)
    with pytest.raises(HamiE2EFailure, match="limit of 3145728000 bytes \\(3000 MiB\\), expected 2147483648"):
        keywords.workload_should_fail_with_hami_core_oom(refused, limit_mib=2048)
    with pytest.raises(HamiE2EFailure, match="succeeded \\(exit code 0\\), expected HAMi-core to refuse it"):
        keywords.workload_should_fail_with_hami_core_oom(ok)


def test_a_failure_without_the_oom_line_is_not_hami_cores(host) -> None:
    keywords, _ = host
    result = {"workload": "torch", "action": "alloc", "exit_code": 3, "output": "ALLOC_FAILED device=0 mib=1 reason=error error=boom\n"}
    with pytest.raises(HamiE2EFailure, match="without HAMi-core's 'Device 0 OOM .*'boom'"):
        keywords.workload_should_fail_with_hami_core_oom(result)


def test_without_preload_the_limit_checks_fail(fake_host) -> None:
    keywords = HamiCoreHostKeywords(Context())
    keywords.prepare_gpu_host(fake_host["libvgpu"], workload="torch", workload_python=fake_host["python"], preload=False)
    keywords.set_hami_core_environment(CUDA_DEVICE_MEMORY_LIMIT="3000m")
    assert "81559 MiB" in keywords.run_nvidia_smi_under_hami_core("csv")
    with pytest.raises(HamiE2EFailure, match="memory limit was not enforced"):
        keywords.workload_should_fail_with_hami_core_oom(keywords.allocate_gpu_memory_under_hami_core(4000))
    with pytest.raises(HamiE2EFailure, match="CUDA reported 81559 MiB total on device 0, expected 3000 MiB"):
        keywords.cuda_total_memory_should_be(keywords.read_cuda_memory_info_under_hami_core(), 3000)


def test_two_processes_share_one_limit(host) -> None:
    keywords, _ = host
    keywords.set_hami_core_environment(CUDA_DEVICE_MEMORY_LIMIT="3000m")
    holder = keywords.start_workload_holding_gpu_memory(1800)
    keywords.workload_should_fail_with_hami_core_oom(keywords.allocate_gpu_memory_under_hami_core(1800), 3000)
    assert "2318MiB /   3000MiB" in keywords.run_nvidia_smi_under_hami_core("table")
    assert "RELEASED" in keywords.stop_workload(holder)
    keywords.workload_should_succeed(keywords.allocate_gpu_memory_under_hami_core(1800))


def test_a_new_environment_gets_its_own_shared_region(host) -> None:
    keywords, _ = host
    keywords.set_hami_core_environment(CUDA_DEVICE_MEMORY_LIMIT="3000m")
    keywords.start_workload_holding_gpu_memory(1800)
    keywords.set_hami_core_environment(CUDA_DEVICE_MEMORY_LIMIT="3000m")
    keywords.workload_should_succeed(keywords.allocate_gpu_memory_under_hami_core(1800))


def test_holder_that_dies_fails_with_its_output(host) -> None:
    keywords, _ = host
    keywords.set_hami_core_environment(CUDA_DEVICE_MEMORY_LIMIT="1000m")
    with pytest.raises(HamiE2EFailure, match="(?s)exited with code 2 before holding its memory:.*Device 0 OOM"):
        keywords.start_workload_holding_gpu_memory(1800)


def test_cuda_memory_info(host) -> None:
    keywords, _ = host
    keywords.set_hami_core_environment(CUDA_DEVICE_MEMORY_LIMIT="2g")
    info = keywords.read_cuda_memory_info_under_hami_core()
    keywords.cuda_total_memory_should_be(info, 2048)
    keywords.cuda_device_count_should_be(info, 1)
    with pytest.raises(HamiE2EFailure, match="saw 1 CUDA device\\(s\\), expected 2"):
        keywords.cuda_device_count_should_be(info, 2)


def test_core_limit_ratio_and_its_expectations(host) -> None:
    keywords, _ = host
    measured = keywords.measure_core_limit_throughput_ratio(30, seconds=0.1)
    assert measured["ratio"] == pytest.approx(0.4)
    assert "3 watcher cycles" not in measured["watcher"] and "1 watcher cycles" in measured["watcher"]
    keywords.core_limit_throughput_ratio_should_be(measured, "throttled", max_ratio=0.75)
    with pytest.raises(HamiE2EFailure, match="throttled the torch workload: throughput ratio 0.400 .*at least 0.9"):
        keywords.core_limit_throughput_ratio_should_be(measured, "unthrottled", min_ratio=0.9)
    with pytest.raises(HamiE2EFailure, match="did not throttle the torch workload: throughput ratio 0.400.*at most 0.3"):
        keywords.core_limit_throughput_ratio_should_be(measured, "throttled", max_ratio=0.3)


def test_require_gpu_count_skips_on_one_gpu(host) -> None:
    keywords, _ = host
    keywords.require_gpu_count(1)
    with pytest.raises(SkipExecution, match="Needs 2 GPUs; this host has 1"):
        keywords.require_gpu_count(2)


def test_protocol_lines() -> None:
    text = "x\nALLOC_FAILED device=0 mib=4000 reason=oom error=CUDA out of memory. Tried = 3.91 GiB\nTHROUGHPUT value=1.5 unit=TFLOP/s\n"
    assert _protocol(text, "ALLOC_FAILED") == {
        "device": "0",
        "mib": "4000",
        "reason": "oom",
        "error": "CUDA out of memory. Tried = 3.91 GiB",
    }
    assert _protocol(text, "THROUGHPUT")["value"] == "1.5"
    assert _protocol(text, "MEMINFO") == {}


def test_watcher_summary_says_when_the_watcher_never_ran() -> None:
    assert "never ran" in _watcher_summary("THROUGHPUT value=1\n", 0)


def test_every_host_keyword_has_docs_with_an_example() -> None:
    from robotlibcore import DynamicCore

    lib = DynamicCore([HamiCoreHostKeywords(Context())])
    for name in lib.get_keyword_names():
        assert "Example:" in lib.get_keyword_documentation(name), name
        assert lib.get_keyword_tags(name), name


def test_facade_imports_both_components() -> None:
    sys.path.insert(0, str(Path(__file__).parents[1] / "libraries"))
    from HostLibrary import HostLibrary

    names = HostLibrary().get_keyword_names()
    assert {"Prepare GPU Host", "GPU Memory Total Should Be", "Set HAMi-Core Environment"} <= set(names)
