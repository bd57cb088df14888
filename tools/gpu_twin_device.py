"""The GPU twin on a lent GPU machine: build what must be built there, start the twin on the real GPUs, run the
suites, the fault run, and leave everything in one folder. Started by ``tools/gpu-twin/run-on-device.sh`` (which
unpacks the pack and sets ``HAMI_E2E_PREBUILT``, ``HAMI_E2E_CACHE``, ``PYTHONPATH``) from the pack's ``tree/``.

    python3 -m tools.gpu_twin_device --work DIR --out DIR [--budget SECONDS]

Steps, each timed in ``summary.json``: the GPUs (nvidia-smi); HAMi-core's ``libvgpu.so`` from the packed source
archive (``tools/gpu-host/build-hami-core.sh``, against this machine's driver); the CUDA C workload
(``tools/workloads/gpu_workload.cu`` with nvcc); the suite's variables for this machine; ``python -m sandbox up``
in GPU-node mode; ``python -m sandbox hami install`` (timed; the suite then verifies that release); then three
robot passes, each stopped (its results kept) when the budget runs short:

- ``gpu``: suites 01 (install), 40 (enforcement) and 45 (real GPUs) with ``ALLOCATION_PROBE: pytorch``;
- ``fault``: the same with HAMi-core not preloaded (``<run>/knobs.json`` ``hami_core: false``, what
  ``HAMI_E2E_HAMI_CORE=off`` writes; new containers start without ``/etc/ld.so.preload``): the limit tests must fail;
- ``more``: suites 10 (vGPU pods) and 50 (metrics) with HAMi-core back on.

``<out>/results.tar.xz`` holds each pass's output.xml and log.html, the sandbox's and every pod's logs, hami.json,
gpu-node.json and the topology; ``<out>/summary.json`` and ``<out>/run.log`` are beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from datetime import datetime, timezone
from pathlib import Path

import yaml

TREE = Path(__file__).resolve().parents[1]
PASSES = {
    "gpu": ("01__install.robot", "40__enforcement.robot", "45__real_gpu.robot"),
    "fault": ("01__install.robot", "40__enforcement.robot", "45__real_gpu.robot"),
    "more": ("01__install.robot", "10__vgpu_pods.robot", "50__metrics.robot"),
}
WHAT = {"gpu": "HAMi-core preloaded", "fault": "fault run: HAMi-core not preloaded (the limit tests must fail)",
        "more": "vGPU pods and metrics suites"}
RESERVE = {"gpu": 170, "fault": 75, "more": 25}   # seconds kept for the passes after it and the collection


class Run:
    def __init__(self, work: Path, out: Path, budget: float) -> None:
        self.work, self.out = work, out
        self.deadline = time.monotonic() + budget
        self.started = time.monotonic()
        self.summary: dict = {"steps": {}, "passes": {}}
        self.log_file = (out / "run.log").open("a")
        self.env = dict(os.environ)

    def say(self, text: str) -> None:
        line = f"[gpu-twin {time.monotonic() - self.started:6.1f}s] {text}"
        print(line, flush=True)
        self.log_file.write(line + "\n")
        self.log_file.flush()

    def sh(self, argv: list[str], what: str, timeout: float, env: dict | None = None) -> subprocess.CompletedProcess:
        began = time.monotonic()
        try:
            result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env or self.env,
                                    cwd=TREE)
        except subprocess.TimeoutExpired as expired:
            result = subprocess.CompletedProcess(argv, 124, str(expired.stdout or ""), f"timed out after {timeout}s")
        seconds = round(time.monotonic() - began, 1)
        self.summary["steps"][what] = {"seconds": seconds, "rc": result.returncode}
        self.log_file.write(f"$ {' '.join(argv)}\n{result.stdout}{result.stderr}\n")
        self.say(f"{what}: rc {result.returncode} in {seconds}s")
        return result

    def left(self) -> float:
        return self.deadline - time.monotonic()


def _facts(run: Run) -> dict:
    fields = "index,uuid,name,memory.total,driver_version,pci.bus_id"
    query = run.sh(["nvidia-smi", f"--query-gpu={fields}", "--format=csv,noheader,nounits"], "nvidia-smi", 60)
    gpus = [dict(zip(fields.split(","), (p.strip() for p in line.split(",")), strict=False))
            for line in query.stdout.splitlines() if line.strip()]
    banner = run.sh(["nvidia-smi"], "nvidia-smi banner", 60).stdout
    match = re.search(r"CUDA Version:\s*([0-9.]+)", banner)
    run.say(banner)
    torch = run.sh([sys.executable, "-c", "import torch; print(torch.__version__, torch.cuda.device_count())"],
                   "torch", 120, env={k: v for k, v in run.env.items() if k != "PYTHONPATH"})
    return {"gpus": gpus, "cuda": match.group(1) if match else "", "torch": torch.stdout.strip(),
            "device": f"{len(gpus)} x {gpus[0]['name']} ({gpus[0]['memory.total']} MiB), driver "
                      f"{gpus[0]['driver_version']}, CUDA {match.group(1) if match else '?'}" if gpus else "no GPU"}


def _variables(run: Run, facts: dict, node: str) -> Path:
    gpus = facts["gpus"]
    model = gpus[0]["name"]
    type_match = next((word for word in model.split() if re.match(r"^[A-Z]+\d", word)), model)
    values = {
        "TARGET": "sandbox", "REAL_GPU_AVAILABLE": True, "REAL_GPU_UNAVAILABLE_REASON": "",
        "GPU_NODES": [node], "GPUS_PER_NODE": len(gpus), "GPU_MODEL": model, "GPU_TYPE_MATCH": type_match,
        "GPU_MEMORY_MIB": int(gpus[0]["memory.total"]), "DEVICE_SPLIT_COUNT": 10,
        "GPU_DRIVER_VERSION": gpus[0]["driver_version"], "CUDA_VERSION": facts["cuda"],
        "ALLOCATION_PROBE": "pytorch", "HAMI_PREVIOUS_CHART_VERSION": "", "HAMI_UNINSTALL_AFTER": "never",
        "HAMI_INSTALL": False,   # installed once before the passes (timed); suite 01 verifies that release
    }
    path = run.work / "gpu-node-variables.yaml"
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    return path


def _set_hami_core(run_dir: Path, enabled: bool) -> None:
    knobs = run_dir / "knobs.json"
    data = json.loads(knobs.read_text()) if knobs.exists() else {}
    data["hami_core"] = enabled
    knobs.write_text(json.dumps(data))


def _robot(run: Run, name: str, variables: Path) -> None:
    limit = run.left() - RESERVE[name]
    if limit < 45:
        run.say(f"robot pass {name}: skipped, {run.left():.0f}s left")
        run.summary["passes"][name] = {"skipped": f"{run.left():.0f}s left of the budget"}
        return
    outdir = run.out / "results" / name
    argv = [sys.executable, "-m", "robot", "--outputdir", str(outdir), "--report", "NONE", "--pythonpath",
            "libraries", "--skiponfailure", "known-bug:*", "--tagstatexclude", "HAMI-E2E-*",
            "--variablefile", str(variables), "--metadata", f"Pass:{WHAT[name]}", "--consolewidth", "100",
            *[arg for suite in PASSES[name] for arg in ("--parse-include", suite)], "suites/"]
    started = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
    began = time.monotonic()
    run.say(f"robot pass {name} ({WHAT[name]}), at most {limit:.0f}s")
    with (run.out / f"robot-{name}.log").open("w") as console:
        proc = subprocess.Popen(argv, stdout=console, stderr=subprocess.STDOUT, cwd=TREE, env=run.env)
        try:
            rc = proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            run.say(f"robot pass {name}: out of time, interrupting (results kept)")
            proc.send_signal(signal.SIGINT)
            try:
                rc = proc.wait(timeout=25)
            except subprocess.TimeoutExpired:
                proc.kill()
                rc = proc.wait()
    seconds = round(time.monotonic() - began, 1)
    run.summary["passes"][name] = {"rc": rc, "seconds": seconds, "started": started, "what": WHAT[name],
                                   "finished": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
                                   "argv": argv[3:]}
    tail = (run.out / f"robot-{name}.log").read_text(errors="replace").splitlines()[-6:]
    run.say(f"robot pass {name}: rc {rc} in {seconds}s; " + " | ".join(tail))


def _collect(run: Run, sandbox_dir: Path) -> None:
    results = run.out / "results"
    results.mkdir(parents=True, exist_ok=True)
    logs = results / "sandbox"
    for pattern in ("logs/*.log", "pods/*/logs/*.log", "*.json", "topology.path", "images.json"):
        for path in sandbox_dir.glob(pattern):
            target = logs / path.relative_to(sandbox_dir)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
    for path in sandbox_dir.glob("nodes/*/allocations/*/*.json"):
        target = logs / path.relative_to(sandbox_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    for extra in (run.work / "gpu-node-variables.yaml", run.work / "hami-core" / "build.log"):
        if extra.exists():
            shutil.copy2(extra, results / extra.name)
    for console in run.out.glob("robot-*.log"):
        shutil.copy2(console, results / console.name)
    (results / "summary.json").write_text(json.dumps(run.summary, indent=1))
    with tarfile.open(run.out / "results.tar.xz", "w:xz") as tar:
        tar.add(results, arcname="results")
    shutil.rmtree(results)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python3 -m tools.gpu_twin_device", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--budget", type=float, default=540, help="seconds for all of it (default 540)")
    parser.add_argument("--passes", default="gpu,fault,more")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    run = Run(args.work, args.out, args.budget)
    sandbox_dir = Path(os.environ.get("HAMI_E2E_SANDBOX_DIR", "/tmp/hami-e2e-sandbox"))
    run.env.update(HAMI_E2E_GPU_NODE="1", PYTHONUNBUFFERED="1",
                   PYTHONPATH=os.pathsep.join(p for p in (str(TREE), os.environ.get("PYTHONPATH")) if p))
    facts = _facts(run)
    gpus = facts["gpus"]
    card = next((w for w in gpus[0]["name"].split() if re.match(r"^[A-Z]+\d", w)), "gpu") if gpus else "none"
    run.summary.update(
        device=facts["device"], torch=facts["torch"], release=f"2.10.0+gpu-twin-{len(gpus)}x{card}",
        revision=(TREE / "REVISION").read_text().strip() if (TREE / "REVISION").exists() else "",
        target=f"sandbox GPU twin (real GPUs): real kube-apiserver/etcd/scheduler; HAMi's real scheduler, webhook, "
               f"device plugin on the real NVML and HAMi-core built here; one node, this machine: {facts['device']}")
    archive_file = next(iter(sorted((args.work / "third_party").glob("HAMi-core-*.tar.gz"))), None)
    hami_core = args.work / "hami-core"
    run.sh(["bash", "tools/gpu-host/build-hami-core.sh", str(archive_file), str(hami_core)], "HAMi-core build", 180,
           env={**run.env, "HAMI_CORE_CUDA_INCLUDE": str(args.work / "third_party" / "cuda-headers" / "include")})
    run.env["HAMI_E2E_LIBVGPU"] = str(hami_core / "libvgpu.so")
    nvcc = shutil.which("nvcc") or "/usr/local/cuda/bin/nvcc"
    workload = args.work / "gpu-workload"
    if run.sh([nvcc, "-O2", "-o", str(workload), "tools/workloads/gpu_workload.cu"], "CUDA C workload build",
              150).returncode == 0:
        run.env["HAMI_E2E_GPU_WORKLOAD"] = str(workload)
    up = run.sh([sys.executable, "-m", "sandbox", "up", "--gpu-node"], "sandbox up (GPU node)", 180)
    run.say(up.stdout[-3000:] + up.stderr[-2000:])
    node = ""
    try:
        node = json.loads((sandbox_dir / "gpu-node.json").read_text())["node"]
    except (OSError, ValueError, KeyError):
        run.say("no gpu-node.json: the sandbox did not start in GPU-node mode")
    install = run.sh([sys.executable, "-m", "sandbox", "hami", "install"], "hami install", 150) \
        if up.returncode == 0 and node else None
    if install is not None:
        run.say(install.stdout[-1500:] + install.stderr[-3000:])
    if install is not None and install.returncode == 0:
        variables = _variables(run, facts, node)
        for name in args.passes.split(","):
            _set_hami_core(sandbox_dir, name != "fault")
            _robot(run, name, variables)
    run.sh([sys.executable, "-m", "sandbox", "status"], "sandbox status", 60)
    _collect(run, sandbox_dir)
    run.sh([sys.executable, "-m", "sandbox", "down"], "sandbox down", 60)
    (args.out / "summary.json").write_text(json.dumps(run.summary, indent=1))
    run.say(f"done in {time.monotonic() - run.started:.0f}s; {json.dumps(run.summary['passes'])[:1500]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
