"""``kubectl exec`` into containers the node agent runs, and nowhere else.

kwok serves exec for every fake node by running the command as a local process. The sandbox starts kwok chrooted
(``kwok_launch``) in a root whose only programs, in ``/usr/bin``, are hard links of ``hami-e2e-exec`` (a small static
C program, ``native/hami-e2e-exec.c``) named after the programs a container may run; the run and temp folders are there
too, but mounted ``noexec``. So an exec'd command either reaches ``hami-e2e-exec``, which enters the container's
namespaces and root and runs it there as the container's user with a time limit, or is not found, as in a container
without that binary. Nothing a user execs runs on the host.

For each container it runs, the agent writes an exec file (``write_exec_file``) and a kwok ``Exec`` object pointing
``HAMI_E2E_EXEC`` at it; pods kwok fakes have no Exec object, so kwok answers that there is nothing to exec.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from .. import config
from ..errors import SandboxError
from ..node_images import GPU_CONTAINER_TOOLS
from ..progress import say
from .host_driver import gpu_node_enabled

SOURCE = Path(__file__).with_name("native") / "hami-e2e-exec.c"
EXEC_TIMEOUT_SECONDS = 600
# Programs a user may exec in HAMi's containers and in GPU containers; kwok finds no other name (module docstring).
ALWAYS = (*GPU_CONTAINER_TOOLS, "nvidia-smi", "gpu-workload", "scheduler", "nvidia-device-plugin", "vGPUmonitor",
          "kube-scheduler")
# GPU-node mode (real GPUs): PyTorch's interpreter is in GPU containers too.
GPU_NODE_PROGRAMS = ("python3",)


def ensure_dispatcher() -> Path:
    """Build ``hami-e2e-exec`` (static, cached by the source's hash) and return its path."""
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:12]
    target = config.cache_dir() / "exec" / digest / "hami-e2e-exec"
    if target.exists():
        return target
    gcc = shutil.which("gcc")
    if gcc is None:
        raise SandboxError("gcc is not on PATH: the sandbox compiles its small exec helper (sandbox/agent/native/) "
                           "with it")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    result = subprocess.run([gcc, "-static", "-O2", "-Wall", "-o", str(tmp), str(SOURCE)], capture_output=True,
                            text=True)
    if result.returncode != 0:
        raise SandboxError(f"compiling {SOURCE} failed: {result.stderr.strip()[-800:]}")
    tmp.replace(target)
    say(f"built the exec helper {target}")
    return target


def bin_dir(run_dir: Path) -> Path:
    """kwok's ``/usr/bin``: the dispatcher under every program name a container may run."""
    return run_dir / "exec-bin"


def install_names(run_dir: Path, dispatcher: Path, names: tuple[str, ...] | list[str] = ALWAYS) -> None:
    folder = bin_dir(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        target = folder / name
        if not target.exists():
            try:
                os.link(dispatcher, target)
            except OSError:
                shutil.copy2(dispatcher, target)


def kwok_launch(run_dir: Path, kwok_argv: list[str], stages_dir: Path) -> list[str]:
    """The command starting kwok chrooted as described above: ``enter.py`` with a minimal root."""
    dispatcher = ensure_dispatcher()
    install_names(run_dir, dispatcher, ALWAYS + (GPU_NODE_PROGRAMS if gpu_node_enabled() else ()))
    rootfs = run_dir / "kwok-root"
    rootfs.mkdir(parents=True, exist_ok=True)
    spec = {
        "rootfs": str(rootfs), "minimal": True, "argv": kwok_argv,
        "env": {"PATH": "/usr/bin", "HOME": "/"},
        "mounts": [
            {"source": "/tmp", "target": "/tmp", "noexec": True},
            {"source": str(run_dir), "target": str(run_dir), "noexec": True},
            {"source": str(stages_dir), "target": str(stages_dir), "readonly": True, "noexec": True},
            {"source": kwok_argv[0], "target": kwok_argv[0], "readonly": True},
            {"source": str(bin_dir(run_dir)), "target": "/usr/bin", "readonly": True},
            {"source": str(bin_dir(run_dir)), "target": "/bin", "readonly": True},
        ],
    }
    spec_file = run_dir / "kwok-root.json"
    spec_file.write_text(json.dumps(spec, indent=1))
    return [sys.executable, "-I", str(Path(__file__).with_name("enter.py")), str(spec_file)]


def write_exec_file(path: Path, pid: int, env: dict[str, str], uid: int | None, gid: int | None,
                    workdir: str) -> None:
    """What ``hami-e2e-exec`` needs to enter a running container (rewritten at each start of the container)."""
    lines = [f"pid={pid}", f"uid={uid or 0}", f"gid={gid or 0}", f"workdir={workdir}",
             f"timeout={EXEC_TIMEOUT_SECONDS}"]
    lines += [f"env={name}={value}" for name, value in env.items() if "\n" not in value]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(path)
