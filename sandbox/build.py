"""Builds the control-plane binaries from the Go module proxy into a version-keyed cache.

The wrapper module of each Kubernetes version (``build/kube`` for the default one, ``build/kube/<minor>/`` for the
others) requires k8s.io/kubernetes with every staging module replaced by its published tag and etcd's server
module; its ``go.mod``/``go.sum`` pin everything. The default module also pins kwok, the nodes' simulator: a kwok
release compiles only against one Kubernetes minor's client libraries, so every version's sandbox runs the kwok
built from the default module (a client of the API server, like any kubelet within the skew policy). Binaries
land in ``<cache>/bin/<key>/`` where the key hashes the module files, the Go version, the flags and the platform,
so a changed pin rebuilds and anything else reuses the cache; the versions' folders sit side by side.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from . import config, prebuilt
from .errors import SandboxError
from .progress import say, step


@dataclass(frozen=True)
class Binary:
    name: str
    package: str
    kube_version_flags: bool


BINARIES = (
    Binary("etcd", "go.etcd.io/etcd/server/v3", False),
    Binary("kube-apiserver", "k8s.io/kubernetes/cmd/kube-apiserver", True),
    Binary("kube-controller-manager", "k8s.io/kubernetes/cmd/kube-controller-manager", True),
    Binary("kube-scheduler", "k8s.io/kubernetes/cmd/kube-scheduler", True),
    Binary("kwok", "sigs.k8s.io/kwok/cmd/kwok", False),
)
BUILD_TAGS = "notest"
STAMP = ".complete"


def go_env() -> dict[str, str]:
    cache = config.cache_dir()
    env = dict(os.environ)
    env.update(
        GOMODCACHE=str(cache / "gomod"),
        GOCACHE=str(cache / "gobuild"),
        GOFLAGS="-modcacherw -mod=readonly",
        GOTOOLCHAIN="local",
        CGO_ENABLED="0",
    )
    return env


def version_ldflags(pins: config.Pins) -> str:
    """Version variables upstream sets at release time; without them the server reports v0.0.0-master."""
    values = {
        "gitVersion": pins.kubernetes,
        "gitMajor": pins.kubernetes.lstrip("v").split(".")[0],
        "gitMinor": pins.kube_minor,
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
    }
    flags = [
        f"-X {package}.{name}={value}"
        for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version")
        for name, value in values.items()
    ]
    return " ".join(flags)


def _go() -> str:
    go = shutil.which("go")
    if not go:
        raise SandboxError(
            "the Go toolchain is not on PATH: the sandbox builds etcd, kube-apiserver, kube-controller-manager, "
            "kube-scheduler and kwok from the Go module proxy and needs Go >= 1.26 (https is only used for the proxy)"
        )
    return go


def _go_version(go: str) -> str:
    return subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True, check=True).stdout.strip()


def _tools(module_dir: Path) -> list[Binary]:
    """The binaries ``module_dir``'s go.mod lists as tools."""
    text = (module_dir / "go.mod").read_text()
    return [binary for binary in BINARIES if re.search(rf"^\s*(tool\s+)?{re.escape(binary.package)}\s*$", text, re.M)]


def _kwok_module(module_dir: Path) -> Path:
    """The module kwok is built from: ``module_dir`` when it pins kwok, else the default module."""
    return module_dir if any(b.name == "kwok" for b in _tools(module_dir)) else config.KUBE_MODULE_DIR


def cache_key(go: str, pins: config.Pins, module_dir: Path | None = None) -> str:
    module_dir = module_dir or config.kube_module_dir()
    digest = hashlib.sha256()
    for folder in dict.fromkeys((module_dir, _kwok_module(module_dir))):
        for name in ("go.mod", "go.sum"):
            digest.update((folder / name).read_bytes())
    for part in (_go_version(go), version_ldflags(pins), BUILD_TAGS, os.uname().sysname, os.uname().machine):
        digest.update(part.encode())
    return f"k8s-{pins.kubernetes}-etcd-{pins.etcd}-kwok-{pins.kwok}-{digest.hexdigest()[:12]}"


def _run(argv: list[str], what: str, log: Path, module_dir: Path) -> None:
    with log.open("ab") as out:
        result = subprocess.run(argv, cwd=module_dir, env=go_env(), stdout=out, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-15:]
        raise SandboxError(f"{what} failed (exit {result.returncode}); full log: {log}\n" + "\n".join(tail))


def ensure_binaries(version: str | None = None) -> Path:
    """Return the directory with all sandbox binaries of Kubernetes ``version`` (default: ``config.kube_version()``,
    i.e. ``HAMI_E2E_KUBE_VERSION`` or the default), building whatever the cache lacks (``HAMI_E2E_PREBUILT``: the
    packed ones, see ``prebuilt.py``)."""
    packed = prebuilt.kube_bin_dir(config.pins(version).kubernetes)
    if packed is not None:
        return packed
    go = _go()
    version = config.kube_version(version)
    module_dir = config.kube_module_dir(version)
    pins = config.pins(version)
    target = config.cache_dir() / "bin" / cache_key(go, pins, module_dir)
    if (target / STAMP).exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    log = config.cache_dir() / ("build.log" if module_dir == config.KUBE_MODULE_DIR else f"build-{version}.log")
    log.write_text("")
    say(f"building Kubernetes {pins.kubernetes}, etcd {pins.etcd} and kwok {pins.kwok} from the Go module proxy")
    say(f"(the first build takes many minutes on 2 cores; later runs reuse {target.parent}); log: {log}")
    modules = list(dict.fromkeys((module_dir, _kwok_module(module_dir))))
    with step("downloading Go modules"):
        for folder in modules:
            _run([go, "mod", "download"], "go mod download", log, folder)
    work = Path(tempfile.mkdtemp(prefix=".building-", dir=target.parent))
    started = time.monotonic()
    try:
        for folder in modules:
            for binary in _tools(folder):
                if folder != module_dir and binary.name != "kwok":
                    continue
                ldflags = "-s -w " + (version_ldflags(pins) if binary.kube_version_flags else "")
                with step(f"building {binary.name}"):
                    _run(
                        [go, "build", "-trimpath", f"-tags={BUILD_TAGS}", f"-ldflags={ldflags}",
                         "-o", str(work / binary.name), binary.package],
                        f"go build {binary.package}",
                        log,
                        folder,
                    )
        _check_versions(work, pins)
        (work / STAMP).write_text(json.dumps({"key": target.name, "seconds": round(time.monotonic() - started, 1)}))
        if target.exists():
            shutil.rmtree(target)
        work.rename(target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def last_build_seconds(bin_dir: Path) -> float | None:
    """How long the build that filled ``bin_dir`` took (module download excluded)."""
    try:
        return float(json.loads((bin_dir / STAMP).read_text())["seconds"])
    except (OSError, ValueError, KeyError):
        return None


def _check_versions(bin_dir: Path, pins: config.Pins) -> None:
    missing = [binary.name for binary in BINARIES if not (bin_dir / binary.name).exists()]
    if missing:
        raise SandboxError(f"the wrapper modules build no {', '.join(missing)}: each must be a `tool` of "
                           f"{config.kube_module_dir()} or, for kwok, of {config.KUBE_MODULE_DIR}")
    out = subprocess.run([bin_dir / "kube-apiserver", "--version"], capture_output=True, text=True).stdout
    if pins.kubernetes not in out:
        raise SandboxError(f"kube-apiserver reports {out.strip()!r}, expected {pins.kubernetes}: version ldflags lost")
