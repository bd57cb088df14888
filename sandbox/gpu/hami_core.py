"""HAMi-core's ``libvgpu.so``, built with CMake exactly as its ``build.sh`` configures it, without a CUDA toolkit.

CMake's FindCUDA wants a toolkit root; a stand-in in the build directory provides it: the headers from PyPI wheels
(:mod:`headers`), empty ``libcuda``/``libcudart``/``libnvidia-ml`` link stubs (HAMi-core opens the real ones at run
time with ``dlopen``) and an ``nvcc`` that only answers ``--version``. Only the ``vgpu`` target is built, so the
stand-in compiles nothing for a GPU. The result depends on libc alone.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from . import buildcache, sources
from .headers import WHEELS

# HAMi-core's build.sh options (Debug: what its Dockerfile and HAMi's image build).
CMAKE_OPTIONS = (
    "-DDLSYM_HOOK_ENABLE=1",
    "-DMULTIPROCESS_LIMIT_ENABLE=1",
    "-DHOOK_MEMINFO_ENABLE=1",
    "-DHOOK_NVML_ENABLE=1",
    "-DCMAKE_BUILD_TYPE=Debug",
    "-DTEST_DEVICE_ID=0",
)
LINK_STUBS = {"cuda": "libcuda.so.1", "cudart": "libcudart.so.13", "nvidia-ml": "libnvidia-ml.so.1"}
HOOK_LIST = "src/cuda/hook.c"


def _tool_versions() -> str:
    return "".join(subprocess.run([tool, "--version"], capture_output=True, text=True).stdout.splitlines()[0]
                   for tool in ("gcc", "cmake"))


def _toolkit_stand_in(root: Path, headers: Path, log: Path) -> None:
    (root / "lib64").mkdir(parents=True)
    (root / "bin").mkdir()
    (root / "include").symlink_to(headers)
    empty = root / "stub.c"
    empty.write_text("int hami_e2e_link_stub;\n")
    for name, soname in LINK_STUBS.items():
        buildcache.run(["gcc", "-shared", f"-Wl,-soname,{soname}", "-o", str(root / "lib64" / f"lib{name}.so"),
                        str(empty)], f"link stub lib{name}.so", log)
    release = WHEELS[0][1]
    nvcc = root / "bin" / "nvcc"
    nvcc.write_text("#!/bin/sh\n# hami-e2e stand-in: headers only, compiles nothing\n"
                    f"echo 'Cuda compilation tools, release {'.'.join(release.split('.')[:2])}, V{release}'\n")
    nvcc.chmod(0o755)


def _build(work: Path, log: Path, source: Path, headers: Path) -> None:
    tree = sources.unpack(source, work / "src")
    toolkit = work / "cuda"
    _toolkit_stand_in(toolkit, headers, log)
    build = work / "build"
    build.mkdir()
    env = {**os.environ, "CUDA_HOME": str(toolkit), "LIBRARY_PATH": str(toolkit / "lib64")}
    buildcache.run(["cmake", str(tree), *CMAKE_OPTIONS, f"-DCUDA_TOOLKIT_ROOT_DIR={toolkit}"],
                   "cmake (HAMi-core)", log, cwd=build, env=env)
    buildcache.run(["make", f"-j{min(2, os.cpu_count() or 1)}", "vgpu"], "make vgpu (HAMi-core)", log, cwd=build,
                   env=env)
    shutil.copy2(build / "libvgpu.so", work / "libvgpu.so")
    for leftover in ("src", "cuda", "build"):
        shutil.rmtree(work / leftover)


def driver_functions(source: Path | None = None) -> list[str]:
    """The CUDA driver functions HAMi-core resolves from ``libcuda.so.1`` (its hook table), in order."""
    text = sources.read_member(source or sources.hami_core_source(), HOOK_LIST)
    return list(dict.fromkeys(re.findall(r'\.name\s*=\s*"(cu\w+)"', text)))


def ensure_hami_core(headers: Path) -> Path:
    """Build (once per input) and return HAMi-core's ``libvgpu.so``."""
    for tool in ("cmake", "make", "gcc"):
        buildcache.require_tool(tool, "build HAMi-core's libvgpu.so")
    source = sources.hami_core_source()
    key = buildcache.digest(source, headers, *CMAKE_OPTIONS, _tool_versions())
    target = buildcache.ensure("hami-core", key, f"HAMi-core from {source.name}",
                               lambda work, log: _build(work, log, source, headers))
    return target / "libvgpu.so"
