"""Builds ``hami-e2e-kubelet``, the kubelet's device-plugin manager for one sandbox node (the Go module beside this
file; see its README.md).

``ensure_binary()`` returns the cached binary or builds it: ``go build -trimpath -ldflags='-s -w'`` with cgo off,
dependencies from the Go module proxy into the sandbox's shared module and build caches (``sandbox.build.go_env``).
The folder ``<cache>/kubelet/<key>/`` is built in a temporary folder and renamed into place, so it is complete or
absent; the key hashes go.mod, go.sum, every non-test ``.go`` file, the Go version, the flags and the platform.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .. import build as kube_build
from .. import config, prebuilt
from ..errors import SandboxError
from ..progress import say, step

MODULE_DIR = Path(__file__).resolve().parent
BINARY = "hami-e2e-kubelet"
BUILD_FLAGS = ("-trimpath", "-ldflags=-s -w")
STAMP = ".complete"


def go_env() -> dict[str, str]:
    """The sandbox's Go environment, cgo off, no workspace file and no VCS stamping (the key says what was built)."""
    env = kube_build.go_env()
    env.update(CGO_ENABLED="0", GOWORK="off", GOFLAGS="-modcacherw -mod=readonly -buildvcs=false")
    return env


def sources() -> list[Path]:
    """The files the binary is built from: go.mod, go.sum and every non-test Go file of the module."""
    go_files = [p for p in MODULE_DIR.rglob("*.go") if not p.name.endswith("_test.go")]
    return [MODULE_DIR / "go.mod", MODULE_DIR / "go.sum", *sorted(go_files)]


def cache_key(go_version: str) -> str:
    digest = hashlib.sha256()
    for path in sources():
        digest.update(str(path.relative_to(MODULE_DIR)).encode() + b"\0" + path.read_bytes() + b"\0")
    for part in (go_version, "CGO_ENABLED=0", *BUILD_FLAGS, os.uname().sysname, os.uname().machine):
        digest.update(part.encode() + b"\0")
    return f"kubelet-{digest.hexdigest()[:12]}"


def ensure_binary(cache: Path | None = None) -> Path:
    """The path of ``hami-e2e-kubelet``, built when the cache (default ``<cache>/kubelet``) lacks it (the packed one
    with ``HAMI_E2E_PREBUILT``)."""
    packed = prebuilt.kubelet_binary()
    if packed is not None and cache is None:
        return packed
    go = _go()
    go_version = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True, check=True).stdout.strip()
    base = cache or config.cache_dir() / "kubelet"
    target = base / cache_key(go_version)
    if not (target / STAMP).exists():
        base.mkdir(parents=True, exist_ok=True)
        with _lock(base / f".{target.name}.lock"):
            if not (target / STAMP).exists():  # another process may have built it while we waited
                _build(go, target, base / "build.log")
    return target / BINARY


def build_seconds(binary: Path) -> float | None:
    """How long the build that made ``binary`` took."""
    try:
        return float(json.loads((binary.parent / STAMP).read_text())["seconds"])
    except (OSError, ValueError, KeyError):
        return None


def _go() -> str:
    go = shutil.which("go")
    if not go:
        raise SandboxError(f"the Go toolchain is not on PATH: {BINARY} (the sandbox's device-plugin manager) is built "
                           f"from {MODULE_DIR} with Go >= 1.26")
    return go


@contextmanager
def _lock(path: Path) -> Iterator[None]:
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _build(go: str, target: Path, log: Path) -> None:
    log.write_text("")
    say(f"building {BINARY} from {MODULE_DIR} (Go modules from the proxy, cached); log: {log}")
    work = Path(tempfile.mkdtemp(prefix=".building-", dir=target.parent))
    started = time.monotonic()
    try:
        argv = [go, "build", *BUILD_FLAGS, "-o", str(work / BINARY), "."]
        with step(f"building {BINARY}"), log.open("a") as out:
            out.write(f"$ {' '.join(argv)}\n")
            out.flush()
            result = subprocess.run(argv, cwd=MODULE_DIR, env=go_env(), stdout=out, stderr=subprocess.STDOUT)
        if result.returncode != 0:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
            raise SandboxError(f"go build of {BINARY} failed (exit {result.returncode}); full log: {log}\n{tail}")
        (work / STAMP).write_text(json.dumps({"key": target.name, "seconds": round(time.monotonic() - started, 1)}))
        if target.exists():
            shutil.rmtree(target)
        work.rename(target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
