"""GPU twin benchmark (issue 10's figures): the build of the simulated GPU pieces and the round trip of ``kubectl
exec`` into a GPU pod through the API server.

    .venv/bin/python -m tools.bench.gpu_pods [--rounds 30] [--pods 5] [--cold]

Run it from the repository root (``-m``: it imports the ``sandbox`` package). Figures printed:

- build of the mock NVML, nvidia-smi, CUDA/NVML headers, HAMi-core and our libcuda + gpu-workload: the seconds each
  piece's cache stamp recorded when it was built; ``--cold`` also builds them all now into an empty temporary cache
  (empty Go build cache; the apt and pip downloads included), about 1-2 minutes on 2 cores;
- GPU pod create -> Running (webhook, extender, device plugin's Allocate, the node agent's GPU container);
- exec round trips with the kubernetes client's stream (what ``kubectl exec`` does): ``nvidia-smi``,
  ``nvidia-smi --query-gpu=...`` and ``gpu-workload meminfo``, median and max of ``--rounds`` runs each.

It starts its own sandbox (run dir ``/tmp/gpu-pods-bench-sandbox``, port offset 6000), installs HAMi and stops the
sandbox at the end; a user's sandbox keeps running.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sandbox.gpu import ensure_all
from sandbox.gpu.headers import ensure_headers

REPO = Path(__file__).resolve().parents[2]
RUN_DIR = Path("/tmp/gpu-pods-bench-sandbox")
ENV = {**os.environ, "HAMI_E2E_PORT_OFFSET": "6000", "HAMI_E2E_SANDBOX_DIR": str(RUN_DIR)}
NAMESPACE = "bench"
POD_TIMEOUT = 90.0
COMMANDS = {
    "nvidia-smi": ["nvidia-smi"],
    "nvidia-smi --query-gpu": ["nvidia-smi", "--query-gpu=uuid,memory.total", "--format=csv,noheader,nounits"],
    "gpu-workload meminfo": ["gpu-workload", "meminfo"],
}


def sandbox(*args: str, env: dict[str, str] = ENV, timeout: float = 1800) -> float:
    """Run ``python -m sandbox ARGS``; returns its seconds, exits with its stderr when it fails."""
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "sandbox", *args], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=timeout)
    if result.returncode != 0:
        sys.exit(f"`sandbox {' '.join(args)}` failed:\n{result.stderr[-3000:]}")
    return time.monotonic() - started


def stamp_seconds(path: Path) -> tuple[str, float]:
    """(piece/key, seconds) from the ``.complete`` stamp of the cached piece holding ``path``."""
    for folder in (path, *path.parents):
        stamp = folder / ".complete"
        if stamp.is_file():
            return f"{folder.parent.name}/{folder.name}", float(json.loads(stamp.read_text()).get("seconds", 0))
    raise SystemExit(f"no build stamp above {path}")


def recorded_build() -> list[tuple[str, float]]:
    sim = ensure_all()
    paths = [sim.mocknvml_dir, sim.nvidia_smi, ensure_headers(), sim.libvgpu, sim.libcuda_dir]
    return [stamp_seconds(path) for path in paths]


def cold_build() -> tuple[float, list[tuple[str, float]]]:
    """Build every piece into an empty temporary cache; returns the wall time and each piece's stamp."""
    with tempfile.TemporaryDirectory(prefix="hami-e2e-gpu-cold-") as cache:
        seconds = sandbox("gpu", "build", env={**ENV, "HAMI_E2E_CACHE": cache})
        stamps = sorted(Path(cache, "gpu").glob("*/*/.complete"))
        return seconds, [(f"{s.parent.parent.name}/{s.parent.name}", float(json.loads(s.read_text())["seconds"]))
                         for s in stamps]


def print_build(title: str, pieces: list[tuple[str, float]], wall: float | None = None) -> None:
    total = sum(seconds for _, seconds in pieces)
    print(f"{title}: {total:.1f} s summed over pieces" + (f", {wall:.1f} s wall" if wall is not None else ""))
    for piece, seconds in pieces:
        print(f"    {piece:<48} {seconds:6.1f} s")


def core_api() -> Any:
    from kubernetes import client, config

    configuration = client.Configuration()
    config.load_kube_config(config_file=str(RUN_DIR / "kubeconfig"), client_configuration=configuration)
    return client.CoreV1Api(client.ApiClient(configuration))


def gpu_pod(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
                "name": "work", "image": "registry.invalid/hami-e2e/workload:1", "command": ["sleep", "infinity"],
                "resources": {"limits": {"nvidia.com/gpu": "1", "nvidia.com/gpumem": "3000",
                                         "nvidia.com/gpucores": "30"}}}]}}


def start_pod(core: Any, name: str) -> float:
    """Create a 3000 MiB / 30 % GPU pod; returns the seconds until it is Running."""
    started = time.monotonic()
    core.create_namespaced_pod(NAMESPACE, gpu_pod(name))
    while time.monotonic() - started < POD_TIMEOUT:
        if core.read_namespaced_pod(name, NAMESPACE).status.phase == "Running":
            return time.monotonic() - started
        time.sleep(0.05)
    sys.exit(f"GPU pod {name} did not run within {POD_TIMEOUT:.0f} s")


def exec_seconds(core: Any, pod: str, argv: list[str]) -> float:
    """One exec through the API server, until the stream closes with a successful status."""
    from kubernetes.stream import stream
    from kubernetes.stream.ws_client import ERROR_CHANNEL

    started = time.monotonic()
    response = stream(core.connect_get_namespaced_pod_exec, pod, NAMESPACE, command=argv, container="work",
                      stdout=True, stderr=True, stdin=False, tty=False, _preload_content=False)
    response.run_forever(timeout=60)
    status = response.read_channel(ERROR_CHANNEL)
    response.close()
    seconds = time.monotonic() - started
    if "Success" not in status:
        sys.exit(f"exec {argv} failed: {status}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=30, help="exec round trips per command")
    parser.add_argument("--pods", type=int, default=5, help="GPU pods to time from create to Running")
    parser.add_argument("--cold", action="store_true", help="also build every GPU piece now into an empty cache")
    args = parser.parse_args()

    print_build("GPU pieces, build time recorded in the cache stamps", recorded_build())
    if args.cold:
        wall, pieces = cold_build()
        print_build("GPU pieces, cold build now (empty cache, downloads included)", pieces, wall)

    sandbox("down")
    up = sandbox("up")
    try:
        install = sandbox("hami", "install", timeout=600)
        print(f"sandbox up {up:.1f} s, HAMi chart install {install:.1f} s")
        core = core_api()
        core.create_namespace({"metadata": {"name": NAMESPACE}})
        starts = [start_pod(core, f"gpu-{i}") for i in range(args.pods)]
        print(f"GPU pod create -> Running: median {statistics.median(starts):.2f} s, max {max(starts):.2f} s "
              f"over {len(starts)} pods")
        for label, argv in COMMANDS.items():
            exec_seconds(core, "gpu-0", argv)   # warm-up, not counted
            samples = [exec_seconds(core, "gpu-0", argv) for _ in range(args.rounds)]
            print(f"exec {label:<24} median {statistics.median(samples) * 1000:6.1f} ms, "
                  f"max {max(samples) * 1000:6.1f} ms over {len(samples)} runs")
    finally:
        sandbox("down")


if __name__ == "__main__":
    main()
