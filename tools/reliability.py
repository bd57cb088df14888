"""Reliability benchmark: the sandbox suite run N times, some runs stopped at a random moment, and what each run
left on the cluster.

    .venv/bin/python tools/reliability.py [--runs 20] [--kill-probability 0.25] [--signals INT,INT2,TERM,TERM2]
                                          [--seed N] [--out DIR] [-- robot options, e.g. --include smoke]

Each run is ``robot suites/`` on the sandbox of ``HAMI_E2E_SANDBOX_DIR``/``HAMI_E2E_PORT_OFFSET`` (started when it
does not run). With probability ``--kill-probability`` a run is stopped at a moment drawn between 3 s and the median
length of the runs that finished so far, by one of ``--signals``: ``INT``/``TERM`` once (robot stops gracefully),
``INT2``/``TERM2`` twice 0.2 s apart (robot stops at once, the library's exit hook cleans up), ``KILL`` (SIGKILL:
nothing runs; the next run's preflight must remove what it left).

After every run the script looks for leftovers two ways: objects carrying the suite's labels (namespaces, Helm
release Secrets, node change records) and, independently of the labels, any difference from the cluster as it was
before the first run (namespaces, Helm releases, node labels and annotations; HAMi's own node annotations and
Kubernetes' bookkeeping excepted, see `VOLATILE_NODE_KEYS`).

It prints, and writes to ``<out>/summary.json``: runs, aborted (by signal), failures by test, flaky tests (passed in
one run and failed in another with nothing changed; failures caused by the stop itself do not count), and the
leftovers found after each run. Robot's outputs of each run are in ``<out>/run-NN/``; default out is
``results/reliability/<UTC timestamp>/``. The runs use a copy of the suite in ``<out>/suite/``: the committed HEAD
(``--worktree``: the working tree as it is), so edits made meanwhile do not mix into them.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hami_e2e.core.ownership import MANAGED_SELECTOR, NODE_CHANGES_ANNOTATION, RUN_LABEL, RUNS_DIR_ENV, runs_dir

REPO = Path(__file__).resolve().parents[1]
SIGNALS = {"INT": (signal.SIGINT,), "INT2": (signal.SIGINT, signal.SIGINT), "TERM": (signal.SIGTERM,),
           "TERM2": (signal.SIGTERM, signal.SIGTERM), "KILL": (signal.SIGKILL,)}
#: Node metadata that changes without any test: HAMi's own registration, handshakes and node lock (HAMi 2.10.0
#: leaves them after an uninstall: known bug, suite 90), and Kubernetes' and kwok's bookkeeping.
VOLATILE_NODE_KEYS = ("hami.io/node-", "hami.io/mutex.lock", "node.alpha.kubernetes.io/ttl", "kwok.x-k8s.io/")
#: Failure messages of tests that the stop itself ended (not a verdict on the product).
STOP_MESSAGES = ("Execution terminated by signal", "Test execution stopped due to a fatal error")
RESULTS_ENV = "HAMI_E2E_RELIABILITY_RESULTS"


class ResultLog:
    """Robot listener (API v3): one JSON line per finished test into ``$HAMI_E2E_RELIABILITY_RESULTS``, so the
    results of a run that was stopped at once (and wrote no complete output.xml) are still known."""

    ROBOT_LISTENER_API_VERSION = 3

    def end_test(self, data: Any, result: Any) -> None:
        line = {"test": result.full_name, "status": result.status, "message": result.message[:500]}
        with open(os.environ[RESULTS_ENV], "a") as out:
            out.write(json.dumps(line) + "\n")


@dataclass
class Run:
    number: int
    signal: str | None = None
    planned_at: float | None = None
    stopped_at: float | None = None
    seconds: float = 0.0
    rc: int | None = None
    tests: dict[str, str] = field(default_factory=dict)  # full name -> PASS/FAIL/SKIP/STOPPED
    messages: dict[str, str] = field(default_factory=dict)
    leftovers: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------------------ the cluster


def api(kubeconfig: Path) -> Any:
    from kubernetes import client, config

    configuration = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    return client.CoreV1Api(client.ApiClient(configuration))


def snapshot(core: Any) -> dict[str, Any]:
    """What the leftover check compares with: namespaces, Helm releases, node labels and annotations."""
    nodes = {}
    for node in core.list_node().items:
        metadata = {f"label {k}": v for k, v in (node.metadata.labels or {}).items()}
        metadata |= {f"annotation {k}": v for k, v in (node.metadata.annotations or {}).items()}
        nodes[node.metadata.name] = {k: v for k, v in metadata.items() if not _volatile(k)}
    releases = sorted({f"{s.metadata.namespace}/{(s.metadata.labels or {}).get('name')}"
                       for s in core.list_secret_for_all_namespaces(label_selector="owner=helm").items})
    return {"namespaces": sorted(n.metadata.name for n in core.list_namespace().items
                                 if n.status.phase != "Terminating"),
            "releases": releases, "nodes": nodes}


def _volatile(key: str) -> bool:
    return key.split(" ", 1)[1].startswith(VOLATILE_NODE_KEYS)


def leftovers(core: Any, baseline: dict[str, Any], grace: float = 60.0) -> list[str]:
    """Objects of the suite (by its labels) and any difference from the baseline (whatever the labels say).
    A namespace that is being deleted gets ``grace`` seconds to go (its pods are gone by then: the suite waits for
    that), and counts only if it is still there."""
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(
            n.status.phase == "Terminating" for n in core.list_namespace(label_selector=MANAGED_SELECTOR).items):
        time.sleep(1)
    found = [f"namespace {n.metadata.name} (run {(n.metadata.labels or {}).get(RUN_LABEL, '?')}, "
             f"{n.status.phase})" for n in core.list_namespace(label_selector=MANAGED_SELECTOR).items]
    found += [f"helm release {s.metadata.namespace}/{(s.metadata.labels or {}).get('name')} "
              f"(run {(s.metadata.labels or {}).get(RUN_LABEL, '?')})"
              for s in core.list_secret_for_all_namespaces(label_selector=f"owner=helm,{MANAGED_SELECTOR}").items]
    found += [f"node {n.metadata.name}: {NODE_CHANGES_ANNOTATION} = {(n.metadata.annotations or {})[NODE_CHANGES_ANNOTATION]}"
              for n in core.list_node().items if NODE_CHANGES_ANNOTATION in (n.metadata.annotations or {})]
    now = snapshot(core)
    found += [f"namespace {n} (not in the baseline)" for n in now["namespaces"] if n not in baseline["namespaces"]]
    found += [f"helm release {r} (not in the baseline)" for r in now["releases"] if r not in baseline["releases"]]
    for node, metadata in now["nodes"].items():
        before = baseline["nodes"].get(node, {})
        for key in sorted(set(metadata) | set(before)):
            if metadata.get(key) != before.get(key):
                found.append(f"node {node}: {key} is {metadata.get(key)!r}, was {before.get(key)!r}")
    found += [f"run lock file {p.name}" for p in runs_dir().glob("*.lock")]
    return sorted(set(found))


# ------------------------------------------------------------------------------------------ one run


def run_once(run: Run, out: Path, suite: Path, robot_options: list[str], env: dict[str, str]) -> None:
    """One robot run of the suite copy ``suite`` (its library first on the import path), stopped as planned."""
    folder = out / f"run-{run.number:02d}"
    folder.mkdir(parents=True)
    results = folder / "tests.jsonl"
    command = [sys.executable, "-m", "robot", "--outputdir", str(folder), "--console", "dotted",
               "--pythonpath", str(suite / "libraries"), "--pythonpath", str(suite / "tools"),
               "--listener", "reliability.ResultLog", *robot_options, "suites/"]
    started = time.monotonic()
    with (folder / "console.txt").open("w") as console:
        robot = subprocess.Popen(command, cwd=suite, env={**env, RESULTS_ENV: str(results)}, stdout=console,
                                 stderr=subprocess.STDOUT)
        try:
            if run.signal and run.planned_at is not None:
                try:
                    robot.wait(timeout=run.planned_at)
                except subprocess.TimeoutExpired:
                    run.stopped_at = round(time.monotonic() - started, 1)
                    for number in SIGNALS[run.signal]:
                        robot.send_signal(number)  # our own child
                        time.sleep(0.2)
            run.rc = robot.wait(timeout=3600)
        except subprocess.TimeoutExpired:
            robot.kill()
            run.rc = robot.wait()
    run.seconds = round(time.monotonic() - started, 1)
    for line in results.read_text().splitlines() if results.exists() else []:
        row = json.loads(line)
        stopped = row["status"] == "FAIL" and any(m in row["message"] for m in STOP_MESSAGES)
        run.tests[row["test"]] = "STOPPED" if stopped else row["status"]
        if row["status"] == "FAIL":
            run.messages[row["test"]] = row["message"]


def plan(run: Run, rng: random.Random, probability: float, signals: list[str], finished: list[float]) -> None:
    if rng.random() < probability:
        window = statistics.median(finished) if finished else 120.0
        run.signal = rng.choice(signals)
        run.planned_at = round(rng.uniform(3.0, max(3.0, window)), 1)


# ------------------------------------------------------------------------------------------ summary


def summarize(runs: list[Run]) -> dict[str, Any]:
    outcomes: dict[str, set[str]] = {}
    failures: dict[str, list[str]] = {}
    for run in runs:
        for test, status in run.tests.items():
            outcomes.setdefault(test, set()).add(status)
            if status == "FAIL":
                failures.setdefault(test, []).append(f"run {run.number}: {run.messages.get(test, '')[:160]}")
    stopped = [r for r in runs if r.stopped_at is not None]
    return {
        "runs": len(runs),
        "aborted": len(stopped),
        "aborted_by": {name: sum(1 for r in stopped if r.signal == name) for name in SIGNALS if
                       any(r.signal == name for r in stopped)},
        "failures_by_test": failures,
        "flaky": sorted(t for t, seen in outcomes.items() if {"PASS", "FAIL"} <= seen),
        "leftovers_after_run": {r.number: r.leftovers for r in runs if r.leftovers},
        # SIGKILL leaves what the run made by design; the next run's preflight must then remove it
        "runs_with_leftovers": sum(1 for r in runs if r.leftovers and not _killed(r)),
        "killed_runs_with_leftovers": sum(1 for r in runs if r.leftovers and _killed(r)),
        "kill_leftovers_kept_by_the_next_run": sorted(
            {thing for before, after in itertools.pairwise(runs) if _killed(before) and not _killed(after)
             for thing in after.leftovers if thing in before.leftovers}),
        "median_seconds_of_finished_runs": statistics.median([r.seconds for r in runs if r.stopped_at is None])
        if any(r.stopped_at is None for r in runs) else None,
    }


def _killed(run: Run) -> bool:
    return run.signal == "KILL" and run.stopped_at is not None


def print_summary(summary: dict[str, Any], robot_options: list[str]) -> None:
    print(f"\nselection: robot {' '.join(robot_options) or '(all tests)'} suites/")
    aborted = ", ".join(f"{n} x{c}" for n, c in summary["aborted_by"].items()) or "none"
    print(f"runs: {summary['runs']}   aborted: {summary['aborted']} ({aborted})   "
          f"median wall time of finished runs: {summary['median_seconds_of_finished_runs']} s")
    print("failures by test:" + (" none" if not summary["failures_by_test"] else ""))
    for test, lines in sorted(summary["failures_by_test"].items()):
        print(f"  {test}: {len(lines)}")
        for line in lines:
            print(f"    {line}")
    print("flaky (passed and failed): " + (", ".join(summary["flaky"]) or "none"))
    print(f"runs with leftovers afterwards: {summary['runs_with_leftovers']} (SIGKILL runs not counted: "
          f"{summary['killed_runs_with_leftovers']} of them left objects; a next run that was not killed too kept "
          f"{len(summary['kill_leftovers_kept_by_the_next_run'])} of those)")
    for number, things in summary["leftovers_after_run"].items():
        print(f"  after run {number}: " + "; ".join(things))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--kill-probability", type=float, default=0.25)
    parser.add_argument("--signals", default="INT,INT2,TERM,TERM2",
                        help=f"comma-separated, of {', '.join(SIGNALS)} (default: INT,INT2,TERM,TERM2)")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--worktree", action="store_true",
                        help="run the working tree's suite (your uncommitted changes) instead of the committed HEAD")
    args, robot_options = parser.parse_known_args(argv)
    robot_options = [o for o in robot_options if o != "--"]
    signals = [s.strip().upper() for s in args.signals.split(",") if s.strip()]
    if unknown := [s for s in signals if s not in SIGNALS]:
        parser.error(f"unknown signals {unknown}; use {', '.join(SIGNALS)}")
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 30)
    rng = random.Random(seed)
    out = (args.out or REPO / "results" / "reliability" / datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")).resolve()
    out.mkdir(parents=True, exist_ok=True)
    # A copy of the suite, so that edits made in the working tree during the hours of runs do not mix into them.
    from mutants.trees import snapshot_suite  # not at the top: robot imports this module for its listener

    commit = snapshot_suite(out / "suite", args.worktree)

    from sandbox import api as sandbox_api

    connection = sandbox_api.start()
    core = api(connection.kubeconfig)
    baseline = snapshot(core)
    # The runs' locks in a folder of their own, so the leftover check sees only these runs' lock files.
    os.environ[RUNS_DIR_ENV] = str(out / "runs")
    env = {**os.environ, "HAMI_E2E_ARCHIVE": "off"}
    print(f"[reliability] {args.runs} runs of robot {' '.join(robot_options)} suites/ on the sandbox "
          f"({connection.kubeconfig}); kill probability {args.kill_probability}, signals {','.join(signals)}, "
          f"seed {seed}; suite {commit}{' (working tree)' if args.worktree else ''}; outputs in {out}", flush=True)
    runs: list[Run] = []
    for number in range(1, args.runs + 1):
        run = Run(number)
        plan(run, rng, args.kill_probability, signals,
             [r.seconds for r in runs if r.stopped_at is None and r.rc is not None])
        run_once(run, out, out / "suite", robot_options, env)
        run.leftovers = leftovers(core, baseline)
        runs.append(run)
        counts = {s: sum(1 for v in run.tests.values() if v == s) for s in ("PASS", "FAIL", "SKIP", "STOPPED")}
        stop = f"stopped by {run.signal} at {run.stopped_at} s" if run.stopped_at is not None else (
            f"ran to the end (a {run.signal} was planned at {run.planned_at} s)" if run.signal else "ran to the end")
        print(f"[reliability] run {number}/{args.runs}: {stop}, rc {run.rc}, {run.seconds} s; "
              + (", ".join(f"{v} {k.lower()}" for k, v in counts.items() if v) or "no test finished")
              + f"; leftovers: {'; '.join(run.leftovers) or 'none'}", flush=True)
        (out / "runs.json").write_text(json.dumps([asdict(r) for r in runs], indent=1))
    summary = summarize(runs)
    summary |= {"seed": seed, "suite": commit, "robot_options": robot_options, "kill_probability": args.kill_probability,
                "signals": signals}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print_summary(summary, robot_options)
    clean = not summary["runs_with_leftovers"] and not summary["kill_leftovers_kept_by_the_next_run"]
    return 0 if clean and not summary["flaky"] else 1


if __name__ == "__main__":
    sys.exit(main())
