"""Tests of the GPU host keywords without a GPU: a fake nvidia-smi, a fake workload interpreter and a fake container
launcher on a temporary PATH stand in for the driver, PyTorch and ``gpu_container.py``, and behave as HAMi-core does
when LD_PRELOAD names libvgpu.so, on a host with two GPUs."""

from __future__ import annotations

import hashlib
import os
import stat
import sys
import tempfile
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest
from robot.api import SkipExecution

from hami_e2e.core.errors import HamiE2EFailure
from hami_e2e.host import CoreLimitKeywords, HostSession, HostSetupKeywords, HostWorkloadKeywords, discovery
from hami_e2e.host import processes
from hami_e2e.host.protocol import protocol_fields, watcher_summary

# The fake behaves like HAMi-core 8f3a89c on two H100s: limits from CUDA_DEVICE_MEMORY_LIMIT[_n] with m/g suffixes by
# the index the process sees, a 518 MiB context counted as usage, the OOM line on stderr, the shared region file
# shared between processes. FAKE_GPUS (set by the fake container launcher) hides the GPUs a container was not given.
FAKE_COMMON = textwrap.dedent(
    """\
    import os, sys
    CARD = 81559
    ALL = [("GPU-aaa", "00000000:00:05.0"), ("GPU-bbb", "00000000:00:06.0")]
    given = os.environ.get("FAKE_GPUS")
    VISIBLE = [g for g in ALL if given is None or g[0] in given.split(",")]
    def preloaded():
        return "libvgpu" in os.environ.get("LD_PRELOAD", "")
    def limit_mib(dev=0):
        if not preloaded():
            return None
        raw = os.environ.get(f"CUDA_DEVICE_MEMORY_LIMIT_{dev}") or os.environ.get("CUDA_DEVICE_MEMORY_LIMIT")
        if not raw:
            return None
        scale = {"m": 1, "g": 1024}.get(raw[-1].lower())
        return int(raw[:-1]) * scale if scale else max(1, int(''.join(c for c in raw if c.isdigit())) // 1048576)
    def hami(msg):
        if preloaded() and os.environ.get("LIBCUDA_LOG_LEVEL", "2") not in ("0", "1"):
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
    hami("Initializing.....")
    args = sys.argv[1:]
    rows = []
    for index, (uuid, bus) in enumerate(VISIBLE):
        total = limit_mib(index) or CARD
        used = used_mib() if preloaded() else 0
        rows.append((index, uuid, bus, total, used))
    if not args:
        print("| NVIDIA-SMI 580.159.04             Driver Version: 580.159.04     CUDA Version: 13.0     |")
        print("+-----------------------------------------+------------------------+----------------------+")
        print("|=========================================+========================+======================|")
        for index, uuid, bus, total, used in rows:
            print(f"|   {index}  NVIDIA H100 80GB HBM3          On  |   {bus} Off |                    0 |")
            print(f"| N/A   31C    P0             68W /  700W |  {used:6d}MiB / {total:6d}MiB |      0%      Default |")
        print("+-----------------------------------------+------------------------+----------------------+")
    elif "--format=csv" in args:
        bus_column = "pci.bus_id" in args[0]
        print("index, uuid, name, memory.total [MiB], memory.used [MiB], memory.free [MiB]"
              + (", pci.bus_id" if bus_column else ""))
        for index, uuid, bus, total, used in rows:
            print(f"{index}, {uuid}, NVIDIA H100 80GB HBM3, {total} MiB, {used} MiB, {total - used} MiB"
                  + (f", {bus}" if bus_column else ""))
    elif "--format=csv,noheader,nounits" in args:
        for index, uuid, bus, total, used in rows:
            print(f"{index}, {uuid}, NVIDIA H100 80GB HBM3, {total}, {used}, {total - used}")
    elif args[0] == "-L":
        for index, uuid, bus, total, used in rows:
            print(f"GPU {index}: NVIDIA H100 80GB HBM3 (UUID: {uuid})")
    else:
        print("==============NVSMI LOG==============")
        print("Driver Version                                         : 580.159.04")
        print("CUDA Version                                           : 13.0")
        print(f"Attached GPUs                                          : {len(rows)}")
        for index, uuid, bus, total, used in rows:
            print(f"GPU {bus}")
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
        print(f"DEVICES count={len(VISIBLE)}")
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
        limited = preloaded() and os.environ.get("CUDA_DEVICE_SM_LIMIT")
        value = 100.0 * (int(limited) / 100 + 0.1 if limited else 1)
        print(f"[HAMI-core Info(1:2:multiprocess_utilization_watcher.c:1)]: device 0: userutil=90 currentcores=-5 "
              f"total=10 limit=30 share=0", file=sys.stderr)
        print(f"THROUGHPUT device={device} value={value:.3f} unit=TFLOP/s seconds=0.1 iterations=10")
    """
)

# Stands in for tools/workloads/gpu_container.py: passes the given GPUs' UUIDs on to the fakes as FAKE_GPUS.
FAKE_CONTAINER = textwrap.dedent(
    """\
    import os, sys
    args, gpus = sys.argv[1:], []
    while args[0] == "--gpu":
        gpus.append(args[1])
        args = args[2:]
    os.environ["FAKE_GPUS"] = ",".join(gpus)
    os.execvp(args[1], args[1:])
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


class Host:
    """The host keyword components sharing one session, as HostLibrary wires them."""

    def __init__(self) -> None:
        self.session = HostSession()
        self.setup = HostSetupKeywords(self.session)
        self.work = HostWorkloadKeywords(self.session)
        self.core = CoreLimitKeywords(self.session)


@pytest.fixture
def fake_host(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _script(bin_dir / "nvidia-smi", FAKE_NVIDIA_SMI)
    python = _script(bin_dir / "fake-python", FAKE_PYTHON)
    monkeypatch.setattr(processes, "CONTAINER_SCRIPT", _script(bin_dir / "fake-container", FAKE_CONTAINER))
    monkeypatch.setattr(discovery, "isolation_problem", lambda: "")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the run's work folder goes there
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("CUDA_DEVICE_MEMORY_LIMIT", "1m")  # a tester's shell must not leak into the tests
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "7")
    # Preloading must not disturb the fakes: a harmless real library (libm) under the name libvgpu.so, if found.
    libvgpu = tmp_path / "libvgpu.so"
    libvgpu.write_bytes(Path(LIBM).read_bytes() if LIBM else b"not really a library")
    return {"libvgpu": str(libvgpu), "python": str(python)}


@pytest.fixture
def host(fake_host):
    keywords = Host()
    facts = keywords.setup.prepare_gpu_host(
        fake_host["libvgpu"],
        workload="torch",
        workload_python=fake_host["python"],
        hami_core_commit="8f3a89c",
        ready_timeout=timedelta(seconds=20),
    )
    yield keywords, facts
    keywords.setup.clean_up_hami_core_processes()


def test_prepare_reports_the_facts_for_the_metadata(host) -> None:
    _, facts = host
    assert facts["gpu_model"] == "NVIDIA H100 80GB HBM3"
    assert (facts["driver_version"], facts["cuda_version"], facts["card_mib"]) == ("580.159.04", "13.0", 81559)
    assert facts["libvgpu_sha256"] == hashlib.sha256(Path(facts["libvgpu"]).read_bytes()).hexdigest()
    assert (facts["gpu_count"], facts["gpu_uuids"]) == (2, "GPU-aaa, GPU-bbb")
    assert facts["hami_core_commit"] == "8f3a89c"
    assert facts["workload"] == "torch 2.11.0+fake"
    assert facts["target"] == "GPU host"
    assert facts["isolation"].startswith("private mount namespace")


def test_prepare_says_when_no_commit_was_given(fake_host) -> None:
    facts = Host().setup.prepare_gpu_host(fake_host["libvgpu"], workload="torch", workload_python=fake_host["python"])
    assert facts["hami_core_commit"] == "not given (set HAMI_CORE_COMMIT)"


def test_prepare_skips_without_libvgpu(fake_host, tmp_path) -> None:
    with pytest.raises(SkipExecution, match="libvgpu.so not found at .*nowhere"):
        Host().setup.prepare_gpu_host(str(tmp_path / "nowhere" / "libvgpu.so"))


def test_prepare_skips_without_nvidia_smi(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SkipExecution, match="nvidia-smi is not on PATH"):
        Host().setup.prepare_gpu_host("/usr/local/vgpu/libvgpu.so")


def test_keywords_need_a_prepared_host() -> None:
    with pytest.raises(HamiE2EFailure, match="not prepared: run the folder"):
        Host().work.run_nvidia_smi_under_hami_core()


def test_nvidia_smi_sees_the_limit_only_with_hami_core(host) -> None:
    keywords, _ = host
    keywords.setup.set_hami_core_environment(CUDA_DEVICE_MEMORY_LIMIT="3000m")
    for fmt in ("table", "csv", "csv-noheader", "query", "query-memory"):
        assert "3000" in keywords.work.run_nvidia_smi_under_hami_core(fmt), fmt
    plain = keywords.work.run_nvidia_smi_without_hami_core("csv")
    assert "81559 MiB" in plain and "HAMI-core" not in plain


def test_inherited_hami_variables_do_not_leak(host) -> None:
    keywords, _ = host
    keywords.setup.set_hami_core_environment()
    assert "81559 MiB" in keywords.work.run_nvidia_smi_under_hami_core("csv")


def test_allocation_under_and_over_the_limit(host) -> None:
    keywords, _ = host
    work = keywords.work
    keywords.setup.set_hami_core_environment(CUDA_DEVICE_MEMORY_LIMIT="3000m")
    ok = work.allocate_gpu_memory_under_hami_core(1000)
    work.workload_should_succeed(ok)
    refused = work.allocate_gpu_memory_under_hami_core(4000)
    work.workload_should_fail_with_hami_core_oom(refused, limit_mib=3000)
    with pytest.raises(HamiE2EFailure, match="failed with exit code 2, expected success. HAMi-core refused it"):
        work.workload_should_succeed(refused)
    with pytest.raises(HamiE2EFailure, match="limit of 3145728000 bytes \\(3000 MiB\\), expected 2147483648"):
        work.workload_should_fail_with_hami_core_oom(refused, limit_mib=2048)
    with pytest.raises(HamiE2EFailure, match="succeeded \\(exit code 0\\), expected HAMi-core to refuse it"):
        work.workload_should_fail_with_hami_core_oom(ok)


def test_a_failure_without_the_oom_line_is_not_hami_cores(host) -> None:
    keywords, _ = host
    result = {"workload": "torch", "action": "alloc", "exit_code": 3, "output": "ALLOC_FAILED device=0 mib=1 reason=error error=boom\n"}
    with pytest.raises(HamiE2EFailure, match="no HAMi-core OOM line .*the failure was 'boom'"):
        keywords.work.workload_should_fail_with_hami_core_oom(result)


def test_without_preload_the_limit_checks_fail(fake_host) -> None:
    keywords = Host()
    keywords.setup.prepare_gpu_host(
        fake_host["libvgpu"], workload="torch", workload_python=fake_host["python"], preload=False
    )
    work = keywords.work
    keywords.setup.set_hami_core_environment(CUDA_DEVICE_MEMORY_LIMIT="3000m")
    assert "81559 MiB" in work.run_nvidia_smi_under_hami_core("csv")
    with pytest.raises(HamiE2EFailure, match="memory limit was not enforced"):
        work.workload_should_fail_with_hami_core_oom(work.allocate_gpu_memory_under_hami_core(4000))
    with pytest.raises(HamiE2EFailure, match="CUDA reported 81559 MiB total on device 0, expected 3000 MiB"):
        work.cuda_total_memory_should_be(work.read_cuda_memory_info_under_hami_core(), 3000)


def test_two_processes_share_one_limit(host) -> None:
    keywords, _ = host
    work = keywords.work
    keywords.setup.set_hami_core_environment(CUDA_DEVICE_MEMORY_LIMIT="3000m")
    holder = work.start_workload_holding_gpu_memory(1800)
    work.workload_should_fail_with_hami_core_oom(work.allocate_gpu_memory_under_hami_core(1800), 3000)
    assert "2318MiB /   3000MiB" in work.run_nvidia_smi_under_hami_core("table")
    assert "RELEASED" in work.stop_workload(holder)
    work.workload_should_succeed(work.allocate_gpu_memory_under_hami_core(1800))


def test_a_new_environment_gets_its_own_shared_region(host) -> None:
    keywords, _ = host
    keywords.setup.set_hami_core_environment(CUDA_DEVICE_MEMORY_LIMIT="3000m")
    keywords.work.start_workload_holding_gpu_memory(1800)
    keywords.setup.set_hami_core_environment(CUDA_DEVICE_MEMORY_LIMIT="3000m")
    keywords.work.workload_should_succeed(keywords.work.allocate_gpu_memory_under_hami_core(1800))


def test_holder_that_dies_fails_with_its_output(host) -> None:
    keywords, _ = host
    keywords.setup.set_hami_core_environment(CUDA_DEVICE_MEMORY_LIMIT="1000m")
    with pytest.raises(HamiE2EFailure, match="(?s)exited with code 2 before it was ready:.*Device 0 OOM"):
        keywords.work.start_workload_holding_gpu_memory(1800)


def test_cuda_memory_info(host) -> None:
    keywords, _ = host
    work = keywords.work
    keywords.setup.set_hami_core_environment(CUDA_DEVICE_MEMORY_LIMIT="2g")
    info = work.read_cuda_memory_info_under_hami_core()
    work.cuda_total_memory_should_be(info, 2048)
    work.cuda_device_count_should_be(info, 2)
    work.cuda_used_memory_should_be_at_least(info, 518)
    with pytest.raises(HamiE2EFailure, match="saw 2 CUDA device\\(s\\), expected 1"):
        work.cuda_device_count_should_be(info, 1)
    with pytest.raises(HamiE2EFailure, match="1530 MiB free of 2048 MiB on device 0: 518 MiB in use, expected at least 600"):
        work.cuda_used_memory_should_be_at_least(info, 600)


def test_a_container_sees_only_the_gpus_it_was_given(host) -> None:
    keywords, _ = host
    work = keywords.work
    keywords.setup.set_up_container_given_gpus("pod", "1", CUDA_DEVICE_MEMORY_LIMIT_0="2g")
    output = work.run_nvidia_smi_under_hami_core("csv")
    work.nvidia_smi_should_list_host_gpus(output, "1")
    assert "0, GPU-bbb, NVIDIA H100 80GB HBM3, 2048 MiB" in output
    with pytest.raises(HamiE2EFailure, match=r"listed 1 GPU\(s\) \['GPU-bbb'\], expected host GPU\(s\) 0 \['GPU-aaa'\]"):
        work.nvidia_smi_should_list_host_gpus(output, "0")
    assert work.read_cuda_memory_info_under_hami_core()["device_count"] == 1
    keywords.setup.set_hami_core_environment()
    work.nvidia_smi_should_list_host_gpus(work.run_nvidia_smi_under_hami_core("csv"), "all")


def test_containers_keep_their_own_limits_and_regions(host) -> None:
    keywords, _ = host
    setup, work = keywords.setup, keywords.work
    setup.set_up_container_given_gpus("first", "0", CUDA_DEVICE_MEMORY_LIMIT_0="2g")
    holder = work.start_workload_holding_gpu_memory(1000)
    assert holder["profile"] == "first"
    setup.set_up_container_given_gpus("second", "1", CUDA_DEVICE_MEMORY_LIMIT_0="3g")
    work.workload_should_succeed(work.allocate_gpu_memory_under_hami_core(1800))
    assert "0 MiB, 3072 MiB" in work.run_nvidia_smi_under_hami_core("csv")
    setup.use_container("first")
    assert "2048 MiB, 1518 MiB" in work.run_nvidia_smi_under_hami_core("csv")
    with pytest.raises(HamiE2EFailure, match="No container 'third' was set up in this test; there are: \\['first', 'second'\\]"):
        setup.use_container("third")


def test_a_container_given_both_gpus_gets_a_limit_per_gpu(host) -> None:
    keywords, _ = host
    work = keywords.work
    keywords.setup.set_up_container_given_gpus("pod", "1, 0", CUDA_DEVICE_MEMORY_LIMIT_0="2g", CUDA_DEVICE_MEMORY_LIMIT_1="3g")
    work.nvidia_smi_should_list_host_gpus(work.run_nvidia_smi_under_hami_core("list"), "0,1")
    work.workload_should_fail_with_hami_core_oom(work.allocate_gpu_memory_under_hami_core(4000, device=1), 3072, device=1)


def test_container_arguments_are_checked(host) -> None:
    keywords, _ = host
    with pytest.raises(HamiE2EFailure, match="This host has no GPU 2; it has \\[0, 1\\]"):
        keywords.setup.set_up_container_given_gpus("pod", "2")
    with pytest.raises(HamiE2EFailure, match="NVML indexes separated by commas"):
        keywords.setup.set_up_container_given_gpus("pod", "GPU-bbb")


def test_containers_skip_where_they_cannot_be_imitated(host, monkeypatch) -> None:
    keywords, _ = host
    keywords.session.host.isolation = "not available: needs root"
    with pytest.raises(SkipExecution, match="cannot be imitated on this host: not available: needs root"):
        keywords.setup.set_up_container_given_gpus("pod", "1")


def test_core_limit_ratio_and_its_expectations(host) -> None:
    keywords, _ = host
    core = keywords.core
    measured = core.measure_core_limit_throughput_ratio(30, seconds=0.1)
    assert measured["ratio"] == pytest.approx(0.4)
    assert "1 watcher cycles" in measured["watcher"]
    core.core_limit_throughput_ratio_should_be(measured, "throttled", max_ratio=0.75)
    with pytest.raises(HamiE2EFailure, match="throttled the torch workload: throughput ratio 0.400 .*at least 0.9"):
        core.core_limit_throughput_ratio_should_be(measured, "unthrottled", min_ratio=0.9)
    with pytest.raises(HamiE2EFailure, match="did not throttle the torch workload: throughput ratio 0.400.*at most 0.3"):
        core.core_limit_throughput_ratio_should_be(measured, "throttled", max_ratio=0.3)


def test_require_gpu_count_skips_with_too_few_gpus(host) -> None:
    keywords, _ = host
    keywords.setup.require_gpu_count(2)
    with pytest.raises(SkipExecution, match="Needs 3 GPUs; this host has 2"):
        keywords.setup.require_gpu_count(3)


def test_protocol_lines() -> None:
    text = "x\nALLOC_FAILED device=0 mib=4000 reason=oom error=CUDA out of memory. Tried = 3.91 GiB\nTHROUGHPUT value=1.5 unit=TFLOP/s\n"
    assert protocol_fields(text, "ALLOC_FAILED") == {
        "device": "0",
        "mib": "4000",
        "reason": "oom",
        "error": "CUDA out of memory. Tried = 3.91 GiB",
    }
    assert protocol_fields(text, "THROUGHPUT")["value"] == "1.5"
    assert protocol_fields(text, "MEMINFO") == {}


def test_watcher_summary_says_when_the_watcher_never_ran() -> None:
    assert "never ran" in watcher_summary("THROUGHPUT value=1\n", 0)


def test_a_container_command_goes_through_the_isolation_helper(host) -> None:
    keywords, _ = host
    keywords.setup.set_up_container_given_gpus("pod", "1")
    command = processes.in_profile(keywords.session.profile(), ["nvidia-smi"])
    assert command[2:] == ["--gpu", "GPU-bbb", "--", "nvidia-smi"]


def test_every_host_keyword_has_docs_with_an_example() -> None:
    from robotlibcore import DynamicCore

    session = HostSession()
    lib = DynamicCore([HostSetupKeywords(session), HostWorkloadKeywords(session), CoreLimitKeywords(session)])
    for name in lib.get_keyword_names():
        assert "Example:" in lib.get_keyword_documentation(name), name
        assert lib.get_keyword_tags(name), name


def test_facade_imports_every_component() -> None:
    from HostLibrary import HostLibrary

    names = HostLibrary().get_keyword_names()
    assert {"Prepare GPU Host", "GPU Memory Total Should Be", "Set Up Container Given GPUs", "Use Container"} <= set(names)


# ------------------------------------------------------------------------ tools/workloads/gpu_container.py, for real
CONTAINER_HELPER = Path(__file__).resolve().parents[1] / "tools" / "workloads" / "gpu_container.py"


@pytest.fixture
def fake_driver(tmp_path) -> dict[str, Path]:
    """A /proc/driver/nvidia/gpus with two GPUs and a /dev with their nodes (plain files stand in for the nodes)."""
    proc = tmp_path / "proc-gpus"
    for bus, uuid, minor in (("0000:00:05.0", "GPU-aaa", 0), ("0000:00:06.0", "GPU-bbb", 1)):
        (proc / bus).mkdir(parents=True)
        (proc / bus / "information").write_text(f"Model: \t H100\nGPU UUID: \t {uuid}\nDevice Minor: \t {minor}\n")
    dev = tmp_path / "dev"
    dev.mkdir()
    for name in ("null", "zero", "urandom", "nvidiactl", "nvidia-uvm", "nvidia0", "nvidia1", "sda", "kvm"):
        (dev / name).write_text(name)
    return {"proc": proc, "dev": dev}


def _helper(fake_driver: dict[str, Path], *args: str) -> "subprocess.CompletedProcess[str]":
    import subprocess

    command = [sys.executable, str(CONTAINER_HELPER), "--proc-gpus", str(fake_driver["proc"]), "--host-dev",
               str(fake_driver["dev"]), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def test_isolation_helper_names_the_gpus_there_are(fake_driver) -> None:
    result = _helper(fake_driver, "--gpu", "GPU-zzz", "--", "true")
    assert result.returncode == 125
    assert "no GPU 'GPU-zzz' on this host; it has 0=GPU-aaa (0000:00:05.0), 1=GPU-bbb (0000:00:06.0)" in result.stderr


def test_isolation_helper_shows_only_the_given_gpu(fake_driver) -> None:
    if os.geteuid() != 0:
        pytest.skip("the isolation helper needs root")
    script = (
        f"ls /dev; echo ---; ls {fake_driver['proc']}; echo ---; cat /dev/nvidia1; echo; "
        "python3 -c 'import os; os.mknod(\"/tmp/hami-e2e-node\", 0o20600, os.makedev(1, 3))' 2>&1 | tail -1; exit 3"
    )
    result = _helper(fake_driver, "--verbose", "--gpu", "1", "--", "sh", "-c", script)
    if result.returncode == 125 and "unshare" in result.stderr:
        pytest.skip(f"no mount namespaces here: {result.stderr.strip()}")
    devices, gpus, rest = result.stdout.split("---\n")
    assert result.returncode == 3, result.stderr
    assert set(devices.split()) == {"fd", "null", "zero", "urandom", "nvidiactl", "nvidia-uvm", "nvidia1", "ptmx",
                                    "stdin", "stdout", "stderr"}
    assert gpus.split() == ["0000:00:06.0"]
    assert rest.startswith("nvidia1\n") and "PermissionError" in rest
    assert "container given GPU 1 (GPU-bbb, 0000:00:06.0, /dev/nvidia1)" in result.stderr
    assert sorted(p.name for p in fake_driver["proc"].iterdir()) == ["0000:00:05.0", "0000:00:06.0"]
    assert not Path("/tmp/hami-e2e-node").exists()
