"""Running processes of the GPU host tier: the environment HAMi-core sees, on the host or inside a container view
of some GPUs (``tools/workloads/gpu_container.py``), in the foreground or the background."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from robot.api import logger

from ..core.errors import HamiE2EFailure
from .state import Background, HostSetup, Profile

WORKLOADS_DIR = Path(__file__).resolve().parents[3] / "tools" / "workloads"
#: The isolation helper: runs a command as a container given some GPUs would run it.
CONTAINER_SCRIPT = WORKLOADS_DIR / "gpu_container.py"

#: Variables that change what HAMi-core does; removed from the inherited environment so a tester's shell cannot leak
#: into a test. ``CUDA_DEVICE_MEMORY_LIMIT_<n>`` and ``CUDA_DEVICE_SM_LIMIT_<n>`` go by prefix.
HAMI_CORE_VARIABLES = (
    "LD_PRELOAD",
    "LIBCUDA_LOG_LEVEL",
    "GPU_CORE_UTILIZATION_POLICY",
    "CUDA_VISIBLE_DEVICES",
    "NVIDIA_VISIBLE_DEVICES",
    "CUDA_DISABLE_CONTROL",
    "CUDA_TASK_PRIORITY",
    "ACTIVE_OOM_KILLER",
)
HAMI_CORE_PREFIXES = ("CUDA_DEVICE_MEMORY_LIMIT", "CUDA_DEVICE_SM_LIMIT", "CUDA_DEVICE_MEMORY_SHARED_CACHE")


def plain_env() -> dict[str, str]:
    """This process's environment without any HAMi-core variable."""
    env = {k: v for k, v in os.environ.items() if k not in HAMI_CORE_VARIABLES and not k.startswith(HAMI_CORE_PREFIXES)}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def hami_env(host: HostSetup, profile: Profile) -> dict[str, str]:
    """The environment of a process under HAMi-core: the profile's variables, its shared region and the preload
    (left out in a fault-injection run)."""
    env = plain_env()
    env["CUDA_DEVICE_MEMORY_SHARED_CACHE"] = str(profile.cache)
    if host.preload:
        env["LD_PRELOAD"] = str(host.libvgpu)
    env.update(profile.variables)
    return env


def in_profile(profile: Profile, command: list[str]) -> list[str]:
    """``command`` as the profile runs it: unchanged on the host, behind the isolation helper in a container."""
    if profile.gpus is None:
        return command
    gpus = [arg for gpu in profile.gpus for arg in ("--gpu", gpu.uuid)]
    return [sys.executable, str(CONTAINER_SCRIPT), *gpus, "--", *command]


def run(command: list[str], env: dict[str, str], timeout: timedelta) -> subprocess.CompletedProcess:
    """Runs ``command`` to its end with stdout and stderr merged; fails if it cannot start or outlives ``timeout``."""
    try:
        return subprocess.run(
            command,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            timeout=timeout.total_seconds(),
            check=False,
        )
    except subprocess.TimeoutExpired as error:
        out = error.stdout.decode(errors="replace") if isinstance(error.stdout, bytes) else (error.stdout or "")
        raise HamiE2EFailure(f"`{' '.join(command)}` did not finish within {timeout}; output so far:\n{out}") from None
    except FileNotFoundError as error:
        raise HamiE2EFailure(f"`{command[0]}` could not be started: {error.strerror}") from None


def log_command(command: list[str], env: dict[str, str]) -> None:
    """Logs the command with the HAMi-core variables it gets, as a tester would type it."""
    shown = {k: v for k, v in env.items() if k in HAMI_CORE_VARIABLES or k.startswith(HAMI_CORE_PREFIXES)}
    prefix = " ".join(f"{k}={v}" for k, v in shown.items())
    logger.info(f"Running: {prefix} {' '.join(command)}".strip())


def start_background(
    description: str, command: list[str], env: dict[str, str], output_file: Path, ready_marker: str, ready: timedelta
) -> Background:
    """Starts ``command`` with its output in ``output_file`` and waits until a line starts with ``ready_marker``;
    fails with the output when it exits first or is not ready in time (it is then left for `stop_background`)."""
    log_command(command, env)
    with output_file.open("w") as sink:
        process = subprocess.Popen(command, env=env, stdout=sink, stderr=subprocess.STDOUT, text=True)
    item = Background(description, process, output_file)
    item.handle = {"pid": process.pid}
    deadline = time.monotonic() + ready.total_seconds()
    while True:
        text = output_file.read_text(errors="replace")
        if f"\n{ready_marker}" in f"\n{text}":
            logger.info(f"{description} (pid {process.pid}) is ready:\n{text}")
            return item
        if process.poll() is not None:
            raise NotReady(item, f"{description} exited with code {process.returncode} before it was ready:\n{text}")
        if time.monotonic() >= deadline:
            raise NotReady(item, f"{description} was not ready within {ready}; output so far:\n{text}")
        time.sleep(0.1)


class NotReady(HamiE2EFailure):
    """A background process that did not get ready; carries it so that the caller can still stop it."""

    def __init__(self, item: Background, message: str) -> None:
        super().__init__(message)
        self.item = item


def stop_background(item: Background) -> str:
    """Stops a background process (SIGTERM, then SIGKILL after 30 s) and returns its output."""
    if item.process.poll() is None:
        item.process.send_signal(signal.SIGTERM)
        try:
            item.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            item.process.kill()
            item.process.wait(timeout=10)
    output = item.output_file.read_text(errors="replace")
    logger.info(f"Stopped {item.description} (exit code {item.process.returncode}); output:\n{output}")
    return output


def result_of(completed: subprocess.CompletedProcess, command: list[str], started: float, **extra: Any) -> dict:
    """The dictionary the workload keywords return for one finished run."""
    return {
        **extra,
        "command": " ".join(command),
        "exit_code": completed.returncode,
        "output": completed.stdout,
        "seconds": round(time.monotonic() - started, 2),
    }
