"""The simulated GPU's build plumbing without building anything: cache keys and stamps, failures, the apt mirror,
the driver stubs, our patches and the GPU process environment."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sandbox.errors import SandboxError
from sandbox.gpu import buildcache, hami_core, mocknvml, native, sources
from sandbox.gpu.nvidia_smi import DEFAULT_MIRROR, debian_mirror
from sandbox.gpu.sim import GpuSim


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HAMI_E2E_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_digest_follows_content_not_names(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("one")
    (tmp_path / "b").write_text("one")
    assert buildcache.digest(tmp_path / "a") == buildcache.digest(tmp_path / "b")
    before = buildcache.digest(tmp_path)
    (tmp_path / "b").write_text("two")
    assert buildcache.digest(tmp_path) != before
    assert buildcache.digest("x", "y") != buildcache.digest("xy")


def test_a_piece_is_built_once_per_key(cache: Path) -> None:
    calls: list[Path] = []

    def build(work: Path, log: Path) -> None:
        calls.append(work)
        (work / "out").write_text("built")

    first = buildcache.ensure("piece", "k1", "a piece", build)
    assert buildcache.ensure("piece", "k1", "a piece", build) == first == cache / "gpu" / "piece" / "k1"
    assert len(calls) == 1 and (first / "out").read_text() == "built"
    assert json.loads((first / buildcache.STAMP).read_text())["key"] == "k1"
    buildcache.ensure("piece", "k2", "a piece", build)
    assert len(calls) == 2


def test_a_failed_build_leaves_only_its_log(cache: Path) -> None:
    def build(work: Path, log: Path) -> None:
        buildcache.run(["sh", "-c", "echo compiling; echo 'boom: no such header' >&2; exit 3"], "make thing", log)

    with pytest.raises(SandboxError, match=r"make thing failed \(exit 3\); full log: .*piece\.log\n(.|\n)*boom"):
        buildcache.ensure("piece", "k", "a piece", build)
    assert not (cache / "gpu" / "piece" / "k").exists()
    assert [p.name for p in (cache / "gpu" / "piece").iterdir()] == [".lock"]
    assert "compiling" in buildcache.log_file("piece").read_text()


def test_a_missing_tool_is_named() -> None:
    with pytest.raises(SandboxError, match="`no-such-tool-here` is not on PATH: it is needed to build X"):
        buildcache.require_tool("no-such-tool-here", "build X")


def test_the_mirror_comes_from_the_system_sources(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    assert debian_mirror(tmp_path) == DEFAULT_MIRROR
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\n# URIs: http://wrong.example/debian\nURIs: http://deb.example.org/debian-security\n\n"
        "Types: deb\nURIs: http://mirror.example.org/debian/\nSuites: bookworm\n")
    assert debian_mirror(tmp_path) == "http://mirror.example.org/debian"
    (tmp_path / "sources.list").write_text("deb http://first.example.org/debian bookworm main\n")
    assert debian_mirror(tmp_path) == "http://first.example.org/debian"


def test_stubs_cover_what_hami_core_resolves_and_the_driver_lacks() -> None:
    source = native.stub_source(["cuInit", "cuMemcpyHtoD_v2", "cuMemcpyHtoD_v2", "cuLaunchKernel"])
    stubbed = [line[5:-1] for line in source.splitlines() if line.startswith("STUB(")]
    assert stubbed == ["cuMemcpyHtoD_v2", "cuLaunchKernel", "cuGetExportTable"]  # cuInit is implemented
    assert "cuMemAlloc_v2" in native.implemented_functions()


def test_hami_core_hook_table_is_read_from_the_archive() -> None:
    try:
        functions = hami_core.driver_functions()
    except SandboxError as error:
        pytest.skip(f"no HAMi-core source here: {error}")
    assert {"cuInit", "cuMemAlloc_v2", "cuDevicePrimaryCtxRetain", "cuGetProcAddress_v2"} <= set(functions)


def test_archives_are_found_exactly_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HAMI_E2E_THIRD_PARTY", str(tmp_path))
    with pytest.raises(SandboxError, match=r"found: none"):
        sources.archive("k8s-test-infra-*.tar.gz")
    (tmp_path / "k8s-test-infra-1.tar.gz").touch()
    assert sources.archive("k8s-test-infra-*.tar.gz").name == "k8s-test-infra-1.tar.gz"
    (tmp_path / "k8s-test-infra-2.tar.gz").touch()
    with pytest.raises(SandboxError, match="found: k8s-test-infra-1.tar.gz, k8s-test-infra-2.tar.gz"):
        sources.archive("k8s-test-infra-*.tar.gz")


def test_hami_core_source_must_be_a_checkout_or_archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HAMI_CORE_SOURCE", str(tmp_path))
    with pytest.raises(SandboxError, match="neither a HAMi-core checkout"):
        sources.hami_core_source()
    (tmp_path / "CMakeLists.txt").touch()
    assert sources.hami_core_source() == tmp_path


def test_every_patch_says_why() -> None:
    patches = mocknvml.patches()
    assert [p.name[:11] for p in patches] == ["mocknvml-01", "mocknvml-02", "mocknvml-03"]
    for patch in patches:
        header = patch.read_text().split("\ndiff --git", 1)[0]
        assert "Why:" in header, f"{patch.name} does not explain itself"


SIM = GpuSim(mocknvml_dir=Path("/nvml"), nvml_ctl=Path("/ctl"), nvidia_smi=Path("/smi"), libvgpu=Path("/vgpu.so"),
             libcuda_dir=Path("/cuda"), workload=Path("/w"))


def test_gpu_process_env_puts_the_simulation_first() -> None:
    env = SIM.process_env(Path("/p.yaml"), {"CUDA_DEVICE_MEMORY_LIMIT_0": "3000m",
                                            "CUDA_DEVICE_MEMORY_SHARED_CACHE": "/c/a.cache"},
                          process_dir=Path("/procs"), context_mib=600, base={"LD_LIBRARY_PATH": "/app", "A": "b"})
    assert env["LD_LIBRARY_PATH"] == "/nvml:/cuda:/app"
    assert (env["MOCK_NVML_CONFIG"], env["MOCK_NVML_PROCESS_DIR"], env["MOCK_CUDA_CONTEXT_MIB"]) == (
        "/p.yaml", "/procs", "600")
    assert (env["LD_PRELOAD"], env["CUDA_DEVICE_MEMORY_LIMIT_0"], env["A"]) == ("/vgpu.so", "3000m", "b")


def test_gpu_process_env_without_hami_core_preloads_nothing() -> None:
    env = SIM.process_env(Path("/p.yaml"), {}, hami_core=False, base={"LD_PRELOAD": "/other.so"})
    assert "LD_PRELOAD" not in env and "MOCK_NVML_PROCESS_DIR" not in env


def test_hami_core_needs_a_shared_region_file_per_container() -> None:
    with pytest.raises(SandboxError, match="CUDA_DEVICE_MEMORY_SHARED_CACHE is not set"):
        SIM.process_env(Path("/p.yaml"), {"CUDA_DEVICE_MEMORY_LIMIT": "3000m"})
