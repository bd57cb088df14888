#!/usr/bin/env python3
"""Probe on a host with two or more GPUs: what HAMi-core counts when a process gets GPU 1 through
``CUDA_VISIBLE_DEVICES`` alone, compared with every GPU visible and with a container given GPU 1.

    tools/gpu-host/probe_visible_devices.py --libvgpu build/libvgpu.so [--limit 2g]

For each way of running (same ``CUDA_DEVICE_MEMORY_LIMIT_0``, a fresh shared region each) it prints what CUDA
reports (total/free), whether an allocation just under and just over the reported free memory is let through,
and HAMi-core's own lines about the device map, the host PID and the context size (``LIBCUDA_LOG_LEVEL=3``).
Then it holds memory under ``CUDA_VISIBLE_DEVICES=1`` and shows, with plain nvidia-smi and with HAMi-core's,
on which GPU the memory really is and on which HAMi-core accounts it. Uses our CUDA C workload (built with nvcc)
and ``tools/workloads/gpu_container.py``; needs root for the container case.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORKLOADS = Path(__file__).resolve().parents[1] / "workloads"
EVIDENCE = re.compile(
    r"device [01] -> \d+|host pid is error|hostPid=\d+|Primary Context Size==\d+|SET_TASK_PID FAILED"
    r"|add_gpu_device_memory_lockfree:\d+ \d+->\d+ \d+|dev=0 context_size=\d+|Device \d+ OOM \d+ / \d+"
)
MARGIN_MIB = 64


def run(command: list[str], env: dict[str, str]) -> tuple[int, str]:
    done = subprocess.run(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
    return done.returncode, done.stdout


def field(output: str, tag: str, key: str) -> str:
    match = re.search(rf"^{tag} .*\b{key}=(\S+)", output, re.M)
    return match[1] if match else "?"


def evidence(output: str, limit: int = 12) -> list[str]:
    seen: list[str] = []
    for match in EVIDENCE.finditer(output):
        if match[0] not in seen:
            seen.append(match[0])
    return seen[:limit]


def gpu_uuids(nvidia_smi: str) -> list[str]:
    listed = subprocess.run([nvidia_smi, "--query-gpu=uuid", "--format=csv,noheader"], capture_output=True, text=True)
    return [line.strip() for line in listed.stdout.splitlines() if line.strip()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--libvgpu", required=True, type=Path)
    parser.add_argument("--limit", default="2g", help="CUDA_DEVICE_MEMORY_LIMIT_0 (default 2g)")
    args = parser.parse_args()
    nvidia_smi, nvcc = shutil.which("nvidia-smi"), shutil.which("nvcc") or "/usr/local/cuda/bin/nvcc"
    if not nvidia_smi or len(gpu_uuids(nvidia_smi)) < 2:
        print("probe: needs nvidia-smi and two GPUs", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="hami-e2e-probe-"))
    binary = work / "gpu_workload"
    subprocess.run([nvcc, "-O2", "-o", str(binary), str(WORKLOADS / "gpu_workload.cu")], check=True)
    uuids = gpu_uuids(nvidia_smi)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("CUDA_", "LD_PRELOAD", "LIBCUDA"))}
    base.update(LD_PRELOAD=str(args.libvgpu.resolve()), CUDA_DEVICE_MEMORY_LIMIT_0=args.limit)
    container = [sys.executable, str(WORKLOADS / "gpu_container.py"), "--gpu", uuids[1], "--"]
    modes = [
        ("every GPU visible, device 0", {}, []),
        ("CUDA_VISIBLE_DEVICES=0", {"CUDA_VISIBLE_DEVICES": "0"}, []),
        ("CUDA_VISIBLE_DEVICES=1", {"CUDA_VISIBLE_DEVICES": "1"}, []),
        ("CUDA_VISIBLE_DEVICES=1,0", {"CUDA_VISIBLE_DEVICES": "1,0"}, []),
        ("container given GPU 1", {}, container),
    ]
    print(f"HAMi-core {args.libvgpu}, CUDA_DEVICE_MEMORY_LIMIT_0={args.limit}, GPUs {', '.join(uuids)}\n")
    for number, (name, extra, prefix) in enumerate(modes):
        env = {**base, **extra, "CUDA_DEVICE_MEMORY_SHARED_CACHE": str(work / f"mode{number}.cache")}
        rc, info = run([*prefix, str(binary), "info", "0"], {**env, "LIBCUDA_LOG_LEVEL": "3"})
        total, free = field(info, "MEMINFO", "total_mib"), field(info, "MEMINFO", "free_mib")
        line = f"{name}: devices {field(info, 'DEVICES', 'count')}, CUDA total {total} MiB, free {free} MiB"
        if free.isdigit():
            for mib in (int(free) - MARGIN_MIB, int(free) + MARGIN_MIB, 1800):
                code, out = run([*prefix, str(binary), "alloc", "0", str(mib)], env)
                oom = re.search(r"Device \d+ OOM \d+ / \d+", out)
                line += f"; alloc {mib} MiB: {'ok' if code == 0 else f'refused ({oom[0] if oom else out[-120:]})'}"
        print(line)
        for item in evidence(info):
            print(f"    {item}")
    print("\nWhere memory held under CUDA_VISIBLE_DEVICES=1 is, and where HAMi-core accounts it:")
    env = {**base, "CUDA_VISIBLE_DEVICES": "1", "CUDA_DEVICE_MEMORY_SHARED_CACHE": str(work / "hold.cache")}
    holder = subprocess.Popen([str(binary), "hold", "0", "1000", "60"], env=env, stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None
    for text in holder.stdout:
        if text.startswith(("HOLDING", "ALLOC_FAILED")):
            break
    time.sleep(1)  # NVML's process list lags the allocation a little
    query = ["--query-gpu=index,memory.total,memory.used", "--format=csv,noheader"]
    plain = {k: v for k, v in base.items() if k not in ("LD_PRELOAD", "CUDA_DEVICE_MEMORY_LIMIT_0")}
    print("  plain nvidia-smi:      " + " | ".join(run([nvidia_smi, *query], plain)[1].strip().splitlines()))
    hami = run([nvidia_smi, *query], env)[1]
    print("  HAMi-core nvidia-smi:  " + " | ".join(l for l in hami.strip().splitlines() if "HAMI-core" not in l))
    holder.send_signal(signal.SIGTERM)
    holder.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
