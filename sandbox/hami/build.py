"""Builds HAMi's Go programs from a HAMi source into a cache folder laid out like HAMi's container image.

``ensure_build()`` resolves the source (``source.resolve``), and returns the cached build for its key or makes it:
``go build`` of ``./cmd/scheduler``, ``./cmd/device-plugin/nvidia`` and ``./cmd/vGPUmonitor`` with the ldflags of
HAMi's Makefile (``-s -w`` and the version, revision and build date of ``pkg/version`` plus the device plugin's
``info.version``), dependencies from the Go module proxy into the shared module and build caches. All three
programs link NVIDIA's go-nvml, which is cgo (it dlopens libnvidia-ml), so cgo is on, as in HAMi's own image build.
``-trimpath`` is ours: binaries carry module paths instead of the temporary folder's, and unchanged packages are
reused from the build cache across sources.

The folder ``<cache>/hami/<VERSION>-<source hash 12>-<toolchain hash 8>/`` holds ``image/`` (see ``image.py``),
``image.json``, ``chart/hami`` (the source's chart, for helm) and ``build.json``; it is built in a temporary folder
and renamed into place, so it is either complete or absent. The key covers the source's content hash, its revision,
the Go version, the platform and our flags: an edited source rebuilds, anything else reuses.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .. import build as kube_build
from .. import config, prebuilt
from ..errors import SandboxError
from ..progress import say, step
from . import image
from .source import HamiSource, resolve

VERSION_PACKAGE = "github.com/Project-HAMi/HAMi/pkg/version"
PLUGIN_INFO_PACKAGE = "github.com/Project-HAMi/HAMi/pkg/device-plugin/nvidiadevice/nvinternal/info"
BUILD_FLAGS = ("-trimpath",)
LAYOUT = "image-folder-1"  # bump when the folder's layout changes, so old builds are not reused
STAMP = ".complete"
BUILD_JSON = "build.json"
CHART_DIR = "chart/hami"


@dataclass(frozen=True)
class Program:
    name: str  # file name in /k8s-vgpu/bin, as HAMi's Makefile names it
    package: str
    version_args: tuple[str, ...]  # how the program prints the version stamped by the ldflags


PROGRAMS = (
    Program("scheduler", "./cmd/scheduler", ("version",)),
    Program("nvidia-device-plugin", "./cmd/device-plugin/nvidia", ("version",)),
    Program("vGPUmonitor", "./cmd/vGPUmonitor", ("version",)),
)


@dataclass(frozen=True)
class HamiBuild:
    """A finished build folder. ``info`` is its build.json."""

    root: Path
    info: dict

    @property
    def version(self) -> str:
        return self.info["version"]

    @property
    def image_dir(self) -> Path:
        """The container image's root: ``k8s-vgpu/`` is below it."""
        return self.root / image.IMAGE_DIR

    @property
    def bin_dir(self) -> Path:
        return image.bin_dir(self.root)

    @property
    def chart_dir(self) -> Path:
        return self.root / CHART_DIR

    def binary(self, name: str) -> Path:
        return self.bin_dir / name

    def image(self) -> dict:
        """image.json: image references, env (PATH first), entrypoint, working dir, files."""
        return json.loads((self.root / image.IMAGE_JSON).read_text())


def builds_dir() -> Path:
    return config.cache_dir() / "hami"


def ensure_build(source: str | os.PathLike[str] | None = None, cache: Path | None = None) -> HamiBuild:
    """The build of ``source`` (see ``source.resolve``), made when the cache (default ``builds_dir()``) lacks it.
    With ``HAMI_E2E_PREBUILT`` the packed build (``source`` may only name its version)."""
    packed = prebuilt.hami_build_dir(None if source is None else str(source)) if cache is None else None
    if packed is not None:
        return HamiBuild(packed, _read_info(packed))
    hami = resolve(source)
    go = _go()
    go_version = _go_version(go)
    base = cache or builds_dir()
    target = base / build_key(hami, go_version)
    if not (target / STAMP).exists():
        base.mkdir(parents=True, exist_ok=True)
        with _lock(base / f".{target.name}.lock"):
            if not (target / STAMP).exists():  # another process may have built it while we waited
                _build(hami, go, go_version, target)
                return HamiBuild(target, _read_info(target))
    say(f"HAMi {hami.version} from {hami.description}: cached build {target}")
    return HamiBuild(target, _read_info(target))


def place_libvgpu(build: HamiBuild, libvgpu: Path) -> Path:
    """Hook for HAMi-core's build: put its ``libvgpu.so`` into the image as
    ``/k8s-vgpu/lib/nvidia/libvgpu.so.<VERSION>``, as HAMi's Dockerfile does; returns the placed file."""
    return image.place_libvgpu(build.root, libvgpu)


def ldflags(hami: HamiSource, build_date: str) -> str:
    """HAMi's Makefile ldflags (GO_BUILD_LDFLAGS) for this source."""
    return " ".join([
        "-s", "-w",
        f"-X {VERSION_PACKAGE}.version={hami.version}",
        f"-X {PLUGIN_INFO_PACKAGE}.version={hami.version}",
        f"-X {VERSION_PACKAGE}.revision={hami.ldflags_revision}",
        f"-X {VERSION_PACKAGE}.buildDate={build_date}",
    ])


def build_key(hami: HamiSource, go_version: str) -> str:
    """``<VERSION>-<content hash 12>-<hash of revision, Go version, platform, flags, layout 8>``."""
    toolchain = hashlib.sha256("\0".join([
        hami.ldflags_revision, go_version, os.uname().sysname, os.uname().machine, "CGO_ENABLED=1",
        *BUILD_FLAGS, ldflags(hami, "<date>"), LAYOUT, *(f"{p.name}={p.package}" for p in PROGRAMS),
    ]).encode()).hexdigest()
    version = re.sub(r"[^0-9A-Za-z._-]", "_", hami.version)
    return f"{version}-{hami.content_hash[:12]}-{toolchain[:8]}"


def go_env() -> dict[str, str]:
    """The sandbox's Go environment (shared module and build caches, no toolchain download) with cgo on, no
    workspace file of the user's and no VCS stamping (the revision comes in through the ldflags)."""
    env = kube_build.go_env()
    env.update(CGO_ENABLED="1", GOWORK="off", GOFLAGS="-modcacherw -mod=readonly -buildvcs=false")
    return env


def _go() -> str:
    go = shutil.which("go")
    if not go:
        raise SandboxError("the Go toolchain is not on PATH: HAMi's scheduler and device plugin are built from their "
                           "source with Go (the version their go.mod names, or newer)")
    return go


def _go_version(go: str) -> str:
    return subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True, check=True).stdout.strip()


def _numbers(version: str) -> tuple[int, ...]:
    match = re.search(r"(\d+(?:\.\d+)*)", version)
    return tuple(int(part) for part in match.group(1).split(".")) if match else ()


def _check_toolchain(source_root: Path, go_version: str, env: dict[str, str]) -> None:
    required = re.search(r"^go\s+(\S+)", (source_root / "go.mod").read_text(), re.MULTILINE)
    if required and _numbers(go_version) < _numbers(required.group(1)):
        raise SandboxError(f"this HAMi source needs Go {required.group(1)} or newer (its go.mod), but the Go on PATH "
                           f"is {go_version}; install a newer Go (no toolchain is downloaded: GOTOOLCHAIN=local)")
    compiler = subprocess.run([_go(), "env", "CC"], capture_output=True, text=True, env=env).stdout.strip() or "gcc"
    if not shutil.which(compiler):
        raise SandboxError(f"no C compiler ({compiler}) on PATH: HAMi's programs use NVIDIA's go-nvml, which needs "
                           "cgo; install gcc")


@contextmanager
def _lock(path: Path) -> Iterator[None]:
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _read_info(target: Path) -> dict:
    return json.loads((target / BUILD_JSON).read_text())


def _run(argv: list[str], cwd: Path, env: dict[str, str], log: Path, what: str) -> None:
    with log.open("a") as out:
        out.write(f"\n$ {' '.join(argv)}\n")
        out.flush()
        result = subprocess.run(argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
        raise SandboxError(f"{what} failed (exit {result.returncode}); full log: {log}\n{tail}")


def _build(hami: HamiSource, go: str, go_version: str, target: Path) -> None:
    log = target.parent / "logs" / f"{target.name}.log"
    log.parent.mkdir(exist_ok=True)
    log.write_text(f"HAMi {hami.version} from {hami.description}\ncontent sha256 {hami.content_hash}\n{go_version}\n")
    for stale in target.parent.glob(f".building-{target.name}-*"):  # left by an interrupted build (we hold the lock)
        shutil.rmtree(stale, ignore_errors=True)
    say(f"building HAMi {hami.version} from {hami.description} with {go_version}")
    say(f"(a new HAMi source takes a few minutes on 2 cores; later runs reuse {target}); log: {log}")
    work = Path(tempfile.mkdtemp(prefix=f".building-{target.name}-", dir=target.parent))
    started = time.monotonic()
    try:
        source_root = _unpack(hami, work / "source") if hami.kind == "archive" else hami.path
        env = go_env()
        _check_toolchain(source_root, go_version, env)
        began = time.monotonic()
        with step("downloading HAMi's Go modules"):
            _run([go, "mod", "download"], source_root, env, log, "go mod download (HAMi's dependencies)")
        download_seconds = time.monotonic() - began
        flags = ldflags(hami, time.strftime("%Y%m%d-%H:%M:%S", time.gmtime()))
        seconds: dict[str, float] = {}
        for program in PROGRAMS:
            began = time.monotonic()
            with step(f"building {program.name}"):
                _run([go, "build", *BUILD_FLAGS, f"-ldflags={flags}", "-o", str(image.bin_dir(work) / program.name),
                      program.package], source_root, env, log, f"go build {program.package} of HAMi {hami.version}")
            seconds[program.name] = round(time.monotonic() - began, 1)
        _check_versions(image.bin_dir(work), hami, log)
        image.lay_out(source_root, work, hami.version)
        shutil.copytree(source_root / "charts" / "hami", work / CHART_DIR, symlinks=True)
        shutil.rmtree(work / "source", ignore_errors=True)
        missing = image.missing_files(work)
        info = {
            "version": hami.version,
            "revision": hami.revision,
            "dirty": hami.dirty,
            "source": hami.description,
            "source_path": str(hami.path),
            "source_kind": hami.kind,
            "content_sha256": hami.content_hash,
            "key": target.name,
            "go_version": go_version,
            "cgo": True,
            "flags": [*BUILD_FLAGS, f"-ldflags={flags}"],
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "download_seconds": round(download_seconds, 1),
            "build_seconds": round(time.monotonic() - started, 1),
            "binaries": {name: {"bytes": (image.bin_dir(work) / name).stat().st_size, "seconds": seconds[name]}
                         for name in seconds},
            "not_in_image": missing,
            "log": str(log),
        }
        (work / BUILD_JSON).write_text(json.dumps(info, indent=2) + "\n")
        (work / STAMP).write_text(target.name + "\n")
        work.chmod(0o755)
        if target.exists():
            shutil.rmtree(target)
        work.rename(target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if missing:
        say("not in the image folder (not built here): " + ", ".join(missing) + "; HAMi-core's build adds libvgpu.so")
    say(f"HAMi {hami.version} built in {target} ({info['build_seconds']:.0f} s)")


def _unpack(hami: HamiSource, into: Path) -> Path:
    with step(f"unpacking {hami.path.name}"):
        try:
            with tarfile.open(hami.path, "r:gz") as tar:
                tar.extractall(into, filter="data")
        except (tarfile.TarError, OSError) as error:
            raise SandboxError(f"cannot unpack the HAMi archive {hami.path}: {error}") from error
    return into / hami.archive_prefix


def _check_versions(bin_dir: Path, hami: HamiSource, log: Path) -> None:
    """Each program must print the stamped version: ``-X`` of a variable that moved is silently ignored."""
    for program in PROGRAMS:
        argv = [str(bin_dir / program.name), *program.version_args]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        with log.open("a") as out:
            out.write(f"\n$ {' '.join(argv)}\n{result.stdout}{result.stderr}")
        if hami.version not in result.stdout + result.stderr:
            raise SandboxError(f"{program.name} {' '.join(program.version_args)} does not print {hami.version}: "
                               f"HAMi's version variables were not stamped (moved in this source?); log: {log}")
