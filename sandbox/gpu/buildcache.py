"""Cached builds of the simulated GPU pieces: one directory per hash of a piece's inputs, built once.

A piece lives in ``<cache>/gpu/<kind>/<key>/`` and counts as built when its ``.complete`` stamp exists. It is built in
a temporary sibling directory and renamed into place, under a file lock, so parallel callers (pytest workers, the
node agent) build it once and never see half a build. Each piece has one log file, ``<cache>/gpu/logs/<kind>.log``.
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
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from .. import config
from ..errors import SandboxError
from ..progress import step

STAMP = ".complete"
SKIPPED_DIRS = {".git", "build", "__pycache__"}


def gpu_cache() -> Path:
    return config.cache_dir() / "gpu"


def log_file(kind: str) -> Path:
    return gpu_cache() / "logs" / f"{kind}.log"


def _tree_files(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*")):
        if path.is_file() and not SKIPPED_DIRS.intersection(path.relative_to(root).parts):
            yield path


def digest(*parts: str | bytes | Path) -> str:
    """A short hash of strings, bytes, files (their content) and directory trees (paths and contents)."""
    hasher = hashlib.sha256()
    for part in parts:
        if isinstance(part, Path) and part.is_dir():
            for path in _tree_files(part):
                hasher.update(str(path.relative_to(part)).encode() + b"\0" + path.read_bytes())
        elif isinstance(part, Path):
            hasher.update(part.read_bytes())
        else:
            hasher.update(part if isinstance(part, bytes) else part.encode())
        hasher.update(b"\0\0")
    return hasher.hexdigest()[:16]


def require_tool(name: str, purpose: str) -> str:
    found = shutil.which(name)
    if not found:
        raise SandboxError(f"`{name}` is not on PATH: it is needed to {purpose}")
    return found


def run(argv: list[str], what: str, log: Path, cwd: Path | None = None, env: Mapping[str, str] | None = None) -> None:
    """Run a build command, appending its output to ``log``; fail with the log's tail."""
    with log.open("ab") as out:
        out.write(f"\n$ {' '.join(argv)}\n".encode())
        out.flush()
        try:
            result = subprocess.run(argv, cwd=cwd, env=dict(env) if env is not None else None, stdout=out,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        except OSError as error:
            raise SandboxError(f"{what} could not start ({error}); full log: {log}") from error
    if result.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-15:]
        raise SandboxError(f"{what} failed (exit {result.returncode}); full log: {log}\n" + "\n".join(tail))


def ensure(kind: str, key: str, label: str, build: Callable[[Path, Path], None]) -> Path:
    """Return ``<cache>/gpu/<kind>/<key>``, running ``build(work_dir, log)`` first when it is not cached.

    ``build`` fills ``work_dir``; whatever it raises leaves nothing behind but the log.
    """
    target = gpu_cache() / kind / key
    if (target / STAMP).exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with (target.parent / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / STAMP).exists():
            return target
        log = log_file(kind)
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(f"# {label}, cache key {key}\n")
        work = Path(tempfile.mkdtemp(prefix=".building-", dir=target.parent))
        started = time.monotonic()
        try:
            with step(f"building {label} (log: {log})"):
                build(work, log)
            seconds = round(time.monotonic() - started, 1)
            (work / STAMP).write_text(json.dumps({"key": key, "seconds": seconds}))
            work.chmod(0o755)  # mkdtemp makes it private; GPU processes may run as another user
            if target.exists():
                shutil.rmtree(target)
            os.rename(work, target)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return target
