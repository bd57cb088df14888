#!/usr/bin/env python3
"""GPU workload of the hami-e2e GPU host tier, written on PyTorch (preferred) or CuPy.

It runs with HAMi-core's ``libvgpu.so`` preloaded and prints one machine-readable line per result, the same
protocol as ``gpu_workload.cu`` (the CUDA C fallback):

    WORKLOAD kind=<torch|cupy> version=<v>
    DEVICES count=<n>
    MEMINFO device=<d> total_mib=<t> free_mib=<f>
    ALLOC_OK device=<d> mib=<n>
    ALLOC_FAILED device=<d> mib=<n> reason=<oom|error> error=<text>
    HOLDING device=<d> mib=<n>
    THROUGHPUT device=<d> value=<tflops> unit=TFLOP/s seconds=<s> iterations=<i>

Exit codes: 0 success, 2 the allocation was refused as out of memory, 3 another CUDA error, 4 usage.

Modes (all take ``--device D``, an index among the visible devices):
    info                              device count and what CUDA reports as total/free memory
    alloc --mib N                     allocate N MiB, write to it, free it
    hold --mib N --max-seconds S      allocate N MiB and keep it until SIGTERM/SIGINT or S seconds
    burn --seconds S                  sustained matrix products for S seconds, report throughput
"""

from __future__ import annotations

import argparse
import signal
import sys
import time

MIB = 1024 * 1024


def _say(line: str) -> None:
    print(line, flush=True)


class _Stop:
    requested = False


def _on_signal(_signum, _frame) -> None:
    _Stop.requested = True


def _backend(prefer: str):
    order = ["torch", "cupy"] if prefer == "auto" else [prefer]
    for name in order:
        try:
            if name == "torch":
                import torch

                if torch.cuda.is_available():
                    return "torch", torch
            elif name == "cupy":
                import cupy

                return "cupy", cupy
        except Exception:  # noqa: BLE001 - try the next backend
            continue
    return None, None


def _is_oom(kind: str, mod, error: BaseException) -> bool:
    if kind == "torch":
        return isinstance(error, mod.cuda.OutOfMemoryError)
    return isinstance(error, mod.cuda.memory.OutOfMemoryError) or "out of memory" in str(error).lower()


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())[:300]


def _info(kind: str, mod, device: int) -> int:
    if kind == "torch":
        count = mod.cuda.device_count()
        _say(f"DEVICES count={count}")
        free, total = mod.cuda.mem_get_info(device)
    else:
        count = mod.cuda.runtime.getDeviceCount()
        _say(f"DEVICES count={count}")
        with mod.cuda.Device(device):
            free, total = mod.cuda.runtime.memGetInfo()
    _say(f"MEMINFO device={device} total_mib={total // MIB} free_mib={free // MIB}")
    return 0


def _allocate(kind: str, mod, device: int, mib: int):
    if kind == "torch":
        buf = mod.empty(mib * MIB, dtype=mod.uint8, device=f"cuda:{device}")
        buf.fill_(1)
        mod.cuda.synchronize(device)
        return buf
    with mod.cuda.Device(device):
        buf = mod.empty(mib * MIB, dtype=mod.uint8)
        buf.fill(1)
        mod.cuda.runtime.deviceSynchronize()
        return buf


def _alloc(kind: str, mod, device: int, mib: int, hold_seconds: float | None) -> int:
    try:
        buf = _allocate(kind, mod, device, mib)
    except Exception as error:  # noqa: BLE001 - reported in the protocol
        reason = "oom" if _is_oom(kind, mod, error) else "error"
        _say(f"ALLOC_FAILED device={device} mib={mib} reason={reason} error={_one_line(error)}")
        return 2 if reason == "oom" else 3
    if hold_seconds is None:
        _say(f"ALLOC_OK device={device} mib={mib}")
        del buf
        return 0
    _say(f"HOLDING device={device} mib={mib}")
    deadline = time.monotonic() + hold_seconds
    while not _Stop.requested and time.monotonic() < deadline:
        time.sleep(0.05)
    del buf
    _say(f"RELEASED device={device} mib={mib}")
    return 0


def _burn(kind: str, mod, device: int, seconds: float) -> int:
    n = 8192
    if kind == "torch":
        dev = f"cuda:{device}"
        a = mod.randn(n, n, dtype=mod.bfloat16, device=dev)
        b = mod.randn(n, n, dtype=mod.bfloat16, device=dev)

        def step():
            return a @ b

        def sync():
            mod.cuda.synchronize(device)
    else:
        mod.cuda.Device(device).use()
        a = mod.random.standard_normal((n, n), dtype=mod.float32).astype(mod.float16)
        b = mod.random.standard_normal((n, n), dtype=mod.float32).astype(mod.float16)

        def step():
            return a @ b

        def sync():
            mod.cuda.runtime.deviceSynchronize()

    for _ in range(3):
        step()
    sync()
    iterations = 0
    start = time.perf_counter()
    while True:
        for _ in range(10):
            step()
        sync()
        iterations += 10
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            break
    tflops = 2.0 * n**3 * iterations / elapsed / 1e12
    _say(
        f"THROUGHPUT device={device} value={tflops:.3f} unit=TFLOP/s seconds={elapsed:.3f} iterations={iterations}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["info", "alloc", "hold", "burn"])
    parser.add_argument("--device", type=int, default=0)
    parser.add_argument("--mib", type=int, default=0)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--max-seconds", type=float, default=120.0)
    parser.add_argument("--backend", choices=["auto", "torch", "cupy"], default="auto")
    args = parser.parse_args(argv)

    kind, mod = _backend(args.backend)
    if kind is None:
        _say(f"WORKLOAD kind=none error=neither PyTorch with CUDA nor CuPy is importable (asked: {args.backend})")
        return 4
    _say(f"WORKLOAD kind={kind} version={mod.__version__}")
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    if args.mode == "info":
        return _info(kind, mod, args.device)
    if args.mode == "alloc":
        return _alloc(kind, mod, args.device, args.mib, None)
    if args.mode == "hold":
        return _alloc(kind, mod, args.device, args.mib, args.max_seconds)
    return _burn(kind, mod, args.device, args.seconds)


if __name__ == "__main__":
    sys.exit(main())
