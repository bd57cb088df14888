"""GPU twin benchmark (issue 9): prints figures, asserts nothing.

    .venv/bin/python -m tools.bench.twin [--pods 20] [--installs 3] [--cold]

- HAMi build: the cold figures recorded in each cached build's build.json (seconds per program, module download);
  ``--cold`` also builds the 2.10.0 archive now into a throwaway cache with an empty Go build cache (the module cache
  is shared read-only, so the proxy is not timed): several minutes on 2 cores.
- warm ``python -m sandbox hami install`` until every HAMi pod is Ready with a live process per container
  (goal <= 30 s), then uninstall, ``--installs`` times;
- GPU pod create -> Running (``nvidia.com/gpu: 1, gpumem: 3000, gpucores: 30``) through HAMi's webhook, extender
  and device plugin, ``--pods`` pods one after another, each deleted once it runs; median and max (goal median
  <= 1 s); a pod that did not go through HAMi (schedulerName, bind-phase) is counted and reported;
- RSS (VmRSS) of every HAMi process.

It runs its own sandbox (run directory and port offset below; stopped at the end), so a user's sandbox keeps running.
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

from sandbox import twin
from sandbox.hami import build as hami_build

REPO = Path(__file__).resolve().parents[2]
RUN_DIR = Path("/tmp/hami-e2e-twin-bench")
# 11000: no port of it meets one of the offsets the tests use (0-4000, 6000, 7000); a chart repository port is the
# etcd peer port of the sandbox 2000 below.
ENV = {**os.environ, "HAMI_E2E_SANDBOX_DIR": str(RUN_DIR), "HAMI_E2E_PORT_OFFSET": "11000"}
NAMESPACE = "twin-bench"
SCHEDULER_NAME = "hami-scheduler"
LIMITS = {"nvidia.com/gpu": "1", "nvidia.com/gpumem": "3000", "nvidia.com/gpucores": "30"}
TIMEOUT = 120.0


def sandbox(*args: str, env: dict[str, str] = ENV) -> tuple[float, str]:
    """Run ``python -m sandbox <args>``; returns its wall time and stdout; exits with its stderr on failure."""
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "sandbox", *args], cwd=REPO, env=env, capture_output=True,
                            text=True)
    if result.returncode != 0:
        sys.exit(f"`python -m sandbox {' '.join(args)}` failed:\n{result.stderr[-3000:]}")
    return time.monotonic() - started, result.stdout


def wait_for(condition: Any, what: str, timeout: float = TIMEOUT) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            sys.exit(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)
    return value


def recorded_builds() -> None:
    for build_json in sorted(hami_build.builds_dir().glob("*/build.json")):
        info = json.loads(build_json.read_text())
        programs = ", ".join(f"{name} {item['seconds']:.0f} s / {item['bytes'] / 1e6:.0f} MB"
                             for name, item in info["binaries"].items())
        print(f"  {info['version']} from {info['source'][:60]}: {info['build_seconds']:.0f} s "
              f"(modules {info['download_seconds']:.0f} s; {programs}) built {info['built_at']}")


def cold_build() -> float:
    """Build the 2.10.0 archive into an empty cache: empty Go build cache, the shared module cache linked in."""
    with tempfile.TemporaryDirectory(prefix="hami-e2e-cold-hami-") as cache:
        os.symlink(hami_build.go_env()["GOMODCACHE"], Path(cache) / "gomod")
        seconds, _ = sandbox("hami", "build", env={**ENV, "HAMI_E2E_CACHE": cache})
        return seconds


def hami_pids() -> dict[str, int]:
    """``<pod>/<container>`` -> pid of every HAMi pod process the bench sandbox's node agent runs."""
    return {f"{pod['pod'].split('/', 1)[1]}/{c['name']}": c["pid"] for pod in twin.processes(RUN_DIR)
            if pod["pod"].startswith(twin.NAMESPACE + "/") for c in pod["containers"] if c["pid"]}


def all_running(core: Any) -> bool:
    pods = core.list_namespaced_pod(twin.NAMESPACE).items
    serving = [p for p in pods if p.metadata.name.startswith(("hami-scheduler-", "hami-device-plugin-"))]
    ready = all(any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or []) for p in serving)
    pids = hami_pids()
    live = all(any(k.startswith(p.metadata.name + "/") for k in pids) for p in serving)
    return bool(serving) and ready and live and all(Path(f"/proc/{pid}").exists() for pid in pids.values())


def install_seconds(core: Any, rounds: int) -> list[float]:
    samples = []
    for _ in range(rounds):
        started = time.monotonic()
        sandbox("hami", "install")
        wait_for(lambda: all_running(core), "HAMi's pods to run")
        samples.append(time.monotonic() - started)
        sandbox("hami", "uninstall")
        wait_for(lambda: not hami_pids(), "HAMi's processes to stop")
    return samples


def gpu_pod(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": NAMESPACE}, "spec": {
        "terminationGracePeriodSeconds": 0,
        "containers": [{"name": "work", "image": "registry.invalid/hami-e2e/bench:1", "command": ["sleep", "600"],
                        "resources": {"limits": LIMITS}}]}}


def pod_seconds(core: Any, count: int, pause: float) -> tuple[list[dict[str, float]], list[str]]:
    """Create -> Running of ``count`` GPU pods, one after another (``pause`` seconds apart); returns for each pod
    when it was seen bound by the extender (bind-phase allocating), allocated by the plugin (success) and Running,
    and the pods HAMi missed."""
    from kubernetes import watch
    from kubernetes.client.exceptions import ApiException

    wait_for(lambda: core.create_namespaced_pod(NAMESPACE, gpu_pod("probe"), dry_run="All").spec.scheduler_name
             == SCHEDULER_NAME, "HAMi's webhook to answer")
    samples, missed = [], []
    for index in range(count):
        time.sleep(pause)
        name = f"gpu-{index}"
        started = time.monotonic()
        core.create_namespaced_pod(NAMESPACE, gpu_pod(name))
        pod, seen = None, {}
        for event in watch.Watch().stream(core.list_namespaced_pod, NAMESPACE, field_selector=f"metadata.name={name}",
                                          timeout_seconds=int(TIMEOUT)):
            phase = (event["object"].metadata.annotations or {}).get("hami.io/bind-phase")
            if phase in ("allocating", "success"):
                seen.setdefault(phase, time.monotonic() - started)
            if event["object"].status.phase == "Running":
                seen["running"] = time.monotonic() - started
                samples.append(seen)
                pod = event["object"]
                break
        annotations = (pod.metadata.annotations or {}) if pod else {}
        if pod is None or pod.spec.scheduler_name != SCHEDULER_NAME or \
                annotations.get("hami.io/bind-phase") != "success":
            missed.append(name)
        core.delete_namespaced_pod(name, NAMESPACE, grace_period_seconds=0)

        def gone(name: str = name) -> bool:
            try:
                core.read_namespaced_pod(name, NAMESPACE)
                return False
            except ApiException as error:
                return error.status == 404

        wait_for(gone, f"pod {name} to go")
    return samples, missed


def rss_report() -> None:
    total = 0
    for key, pid in sorted(hami_pids().items()):
        status = Path(f"/proc/{pid}/status").read_text()
        rss = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))
        total += rss
        print(f"  {key:<58} pid {pid:<7} {os.readlink(f'/proc/{pid}/exe').rsplit('/', 1)[-1]:<22} "
              f"{rss / 1024:6.1f} MiB")
    print(f"  {'total':<58} {'':<34}{total / 1024:6.1f} MiB")


def core_api() -> Any:
    from kubernetes import client, config

    configuration = client.Configuration()
    config.load_kube_config(config_file=str(RUN_DIR / "kubeconfig"), client_configuration=configuration)
    return client.CoreV1Api(client.ApiClient(configuration))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pods", type=int, default=20, help="GPU pods to time from create to Running")
    parser.add_argument("--installs", type=int, default=3, help="warm installs to time")
    parser.add_argument("--pause", type=float, default=0.0,
                        help="seconds between GPU pods (HAMi's API client allows 5 requests/s, bursts of 10)")
    parser.add_argument("--cold", action="store_true", help="also time a HAMi build with an empty Go build cache")
    args = parser.parse_args()

    print("HAMi builds recorded in the cache (build.json):")
    recorded_builds()
    if args.cold:
        print(f"cold HAMi 2.10.0 build (measured now, empty Go build cache, modules present): {cold_build():.0f} s")
    sandbox("down")
    up, _ = sandbox("up")
    print(f"sandbox up (HAMi loaded from the cache): {up:.1f} s")
    try:
        core = core_api()
        core.create_namespace({"metadata": {"name": NAMESPACE}})
        installs = install_seconds(core, args.installs)
        print(f"warm hami install -> all pods running: median {statistics.median(installs):.1f} s, "
              f"max {max(installs):.1f} s (runs: {', '.join(f'{t:.1f}' for t in installs)}; goal <= 30 s)")
        sandbox("hami", "install")
        wait_for(lambda: all_running(core), "HAMi's pods to run")
        samples, missed = pod_seconds(core, args.pods, args.pause)
        running = [s["running"] for s in samples]
        print(f"GPU pod create -> Running through webhook, extender and plugin ({args.pause:g} s between pods): "
              f"median {statistics.median(running):.2f} s, max {max(running):.2f} s over {len(running)} pods "
              f"(goal median <= 1 s)" + (f"; NOT through HAMi: {', '.join(missed)}" if missed else ""))
        steps = [("create -> bound by the extender (bind-phase allocating)", None, "allocating"),
                 ("-> allocated by the device plugin (success)", "allocating", "success"),
                 ("-> Running (node agent started the container)", "success", "running")]
        for label, since, until in steps:
            spans = [s[until] - s.get(since, 0.0) for s in samples if until in s and (since is None or since in s)]
            if spans:
                print(f"  {label:<58} median {statistics.median(spans):.2f} s, max {max(spans):.2f} s")
        print("RSS of HAMi's processes:")
        rss_report()
    finally:
        sandbox("down")


if __name__ == "__main__":
    main()
