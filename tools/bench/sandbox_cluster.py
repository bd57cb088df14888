"""Sandbox benchmark: prints build, up, down and pod-start times (targets: warm up <= 20 s, down <= 5 s,
cold build <= 25 min on 2 cores).

    .venv/bin/python -m tools.bench.sandbox_cluster [--rounds 3] [--pods 10] [--cold]

It runs its own sandbox on shifted ports (a user's sandbox keeps running). ``--cold`` also builds every binary
from scratch in a throwaway Go build cache (about 10 minutes on 2 cores); without it the cold figure is the one
recorded when the cached binaries were built.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sandbox import build

REPO = Path(__file__).resolve().parents[2]

RUN_DIR = Path("/tmp/hami-e2e-sandbox-bench")
ENV = {**os.environ, "HAMI_E2E_PORT_OFFSET": "3000", "HAMI_E2E_SANDBOX_DIR": str(RUN_DIR)}


def timed(*args: str, env: dict[str, str] = ENV) -> float:
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "sandbox", *args], cwd=REPO, env=env, capture_output=True,
                            text=True)
    if result.returncode != 0:
        sys.exit(f"`sandbox {' '.join(args)}` failed:\n{result.stderr}")
    return time.monotonic() - started


def cold_build() -> float:
    with tempfile.TemporaryDirectory(prefix="hami-e2e-cold-") as cache:
        modules = Path(cache) / "gomod"
        shutil.copytree(Path(build.go_env()["GOMODCACHE"]), modules, symlinks=True)  # the proxy is not timed
        return timed("build", env={**ENV, "HAMI_E2E_CACHE": cache})


def pod_start_seconds(kubeconfig: Path, pods: int) -> list[float]:
    from kubernetes import client, config, watch

    configuration = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    core = client.CoreV1Api(client.ApiClient(configuration))
    samples = []
    for i in range(pods):
        name = f"bench-{i}"
        started = time.monotonic()
        core.create_namespaced_pod("default", {"metadata": {"name": name}, "spec": {"containers": [
            {"name": "c", "image": "registry.invalid/bench", "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}})
        for event in watch.Watch().stream(core.list_namespaced_pod, "default", field_selector=f"metadata.name={name}",
                                          timeout_seconds=60):
            if event["object"].status.phase == "Running":
                samples.append(time.monotonic() - started)
                break
        core.delete_namespaced_pod(name, "default", grace_period_seconds=0)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="up/down cycles to time")
    parser.add_argument("--pods", type=int, default=10, help="pods to time from create to Running")
    parser.add_argument("--cold", action="store_true", help="also time a from-scratch build (~10 min)")
    args = parser.parse_args()

    bin_dir = build.ensure_binaries()
    recorded = build.last_build_seconds(bin_dir)
    print(f"cold build (recorded when the cache was filled): {recorded:.0f} s" if recorded else
          "cold build: not recorded (binaries built before timing was kept)")
    if args.cold:
        print(f"cold build (measured now, modules pre-downloaded): {cold_build():.0f} s")
    ups, downs = [], []
    for _ in range(args.rounds):
        ups.append(timed("up"))
        downs.append(timed("down"))
    print(f"warm up:   median {statistics.median(ups):.1f} s  (runs: {', '.join(f'{t:.1f}' for t in ups)})")
    print(f"down:      median {statistics.median(downs):.1f} s  (runs: {', '.join(f'{t:.1f}' for t in downs)})")
    timed("up")
    try:
        samples = pod_start_seconds(RUN_DIR / "kubeconfig", args.pods)
    finally:
        timed("down")
    print(f"pod create -> Running: median {statistics.median(samples):.2f} s, max {max(samples):.2f} s "
          f"over {len(samples)} pods")


if __name__ == "__main__":
    main()
