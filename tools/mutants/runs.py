"""One run of the suite against one source: build it, start a dedicated sandbox from it, run robot, stop the sandbox.

The sandbox is the harness's own (``HAMI_E2E_SANDBOX_DIR`` and ``HAMI_E2E_PORT_OFFSET``, default
``/tmp/mutant-sandbox`` and 7000), started from the trees with ``HAMI_SOURCE`` and ``HAMI_CORE_SOURCE``. Two more
things keep a run apart from everyone else's:

- ``HAMI_E2E_THIRD_PARTY`` names a folder of links to the third-party archives without the previous HAMi release, so
  ``sandbox up`` loads no 2.9.0 build: ``load_hami`` places the sandbox's ``libvgpu.so`` into every build it loads,
  and the 2.9.0 build folder is shared with every other sandbox (a HAMi-core mutant's library must never land there).
  The N-1 upgrade test (HAMI-E2E-605) therefore skips in these runs (``HAMI_PREVIOUS_CHART_VERSION`` empty).
- helm gets its own configuration and cache in the run's folder (``HELM_*`` variables): the suite adds the chart
  repository ``hami-sandbox`` to helm's user configuration, which every sandbox on the machine shares, so two
  sandboxes at once would race on that name and one could install the other's chart.

The robot run is bounded: at its deadline it gets SIGINT (robot ends the running test and writes its output), and
tests it did not finish count as not run. Tests that fail on a mutant but pass on the baseline (at most three, the
claimed ones first) run once more on the same sandbox (a confirmation run, HAMi installed again): only a test that fails
both times kills the mutant, so a flaky test does not. Before robot starts, the harness checks that the sandbox really
loaded the mutant: the HAMi build folder it runs is the tree's, and the ``libvgpu.so`` in it is the one built from the
HAMi-core source of the run.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from robot.api import ExecutionResult

from sandbox import config

from .trees import Trees

REPO = config.REPO_DIR
PREREQUISITES = ("HAMI-E2E-00?", "HAMI-E2E-01?")   # preflight and install: every run needs HAMi installed
STOPPED = "Execution terminated by signal"
PREVIOUS_RELEASE_ARCHIVE = "HAMi-2.9.0.tar.gz"
CONFIRM_AT_MOST = 3   # a mutant that fails many tests often fails them by timeouts: confirm a few, not all
# The sandbox's ports lie in Linux's ephemeral range (32768-60999), so a client socket of any process may hold one
# for a while ("port ... is already in use"); a start was also seen failing with kwok killed (-9) at once.
START_ATTEMPTS = 3
START_RETRY_PAUSE = 30.0


@dataclass(frozen=True)
class Settings:
    sandbox_dir: Path
    port_offset: int
    max_seconds: float
    suite_dir: Path = REPO   # the copy of the repository the sandbox and robot run from (``trees.snapshot_suite``)


@dataclass
class Outcome:
    status: str      # PASS, FAIL, SKIP, or NOT RUN (stopped at the deadline)
    message: str
    name: str


@dataclass
class RunResult:
    label: str
    error: str = ""                                   # why the run could not test anything (build, start, load)
    tests: dict[str, Outcome] = field(default_factory=dict)   # by ID tag
    confirmation: dict[str, Outcome] = field(default_factory=dict)  # the second run of the suspected kills
    seconds: dict[str, float] = field(default_factory=dict)       # build, up, robot, down, total
    robot_rc: int | None = None
    timed_out: bool = False
    hami_build: str = ""
    libvgpu_sha256: str = ""


def third_party_without_previous() -> Path:
    """``<cache>/mutants/third-party/``: links to every third-party archive but the previous HAMi release."""
    folder = config.cache_dir() / "mutants" / "third-party"
    folder.mkdir(parents=True, exist_ok=True)
    source = config.third_party_dir()
    for archive in sorted(source.iterdir()):
        link = folder / archive.name
        if archive.name == PREVIOUS_RELEASE_ARCHIVE or link.exists() or link.is_symlink():
            continue
        link.symlink_to(archive.resolve())
    return folder


def environment(settings: Settings, trees: Trees, out_dir: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("HELM_")}
    helm = out_dir / "helm"
    env.update({
        "HAMI_E2E_SANDBOX_DIR": str(settings.sandbox_dir),
        "HAMI_E2E_PORT_OFFSET": str(settings.port_offset),
        "HAMI_SOURCE": str(trees.hami),
        "HAMI_CORE_SOURCE": str(trees.core),
        "HAMI_E2E_THIRD_PARTY": str(third_party_without_previous()),
        "HAMI_E2E_HAMI_CORE": "on",
        "HELM_CONFIG_HOME": str(helm / "config"),
        "HELM_CACHE_HOME": str(helm / "cache"),
        "HELM_DATA_HOME": str(helm / "data"),
        "PYTHONUNBUFFERED": "1",
    })
    return env


def _step(argv: list[str], env: dict[str, str], log: Path, timeout: float, cwd: Path) -> tuple[int, str, float]:
    """Run a command in ``cwd``, append its output to ``log``; returns (rc, stdout, seconds)."""
    started = time.monotonic()
    try:
        result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
        rc, out, err = result.returncode, result.stdout, result.stderr
    except subprocess.TimeoutExpired as expired:
        rc, out, err = 124, str(expired.stdout or ""), f"{expired.stderr or ''}\ntimed out after {timeout:.0f} s"
    with log.open("a") as handle:
        handle.write(f"$ {' '.join(argv)}\n{out}{err}\n(rc {rc})\n\n")
    return rc, out, time.monotonic() - started


def _sandbox(settings: Settings, env: dict[str, str], log: Path, *args: str,
             timeout: float = 900) -> tuple[int, str, float]:
    """``python -m sandbox <args>`` in the suite copy (its ``sandbox`` package comes first on the import path)."""
    return _step([sys.executable, "-m", "sandbox", *args], env, log, timeout, settings.suite_dir)


def _tail(log: Path, lines: int = 6) -> str:
    return " | ".join(line for line in log.read_text(errors="replace").splitlines()[-lines:] if line.strip())


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build(settings: Settings, env: dict[str, str], log: Path, result: RunResult) -> Path | None:
    """Build (or reuse) the run's HAMi and HAMi-core; returns the libvgpu.so path, or None with ``result.error``."""
    rc, out, seconds = _sandbox(settings, env, log, "hami", "build", timeout=1800)
    result.seconds["build"] = seconds
    if rc != 0:
        result.error = f"HAMi does not build: {_tail(log)}"
        return None
    result.hami_build = out.strip().splitlines()[-1]
    rc, out, seconds = _sandbox(settings, env, log, "gpu", "build", timeout=900)
    result.seconds["build"] += seconds
    libvgpu = next((line.split("=", 1)[1] for line in out.splitlines() if line.startswith("libvgpu=")), "")
    if rc != 0 or not libvgpu:
        result.error = f"HAMi-core does not build: {_tail(log)}"
        return None
    result.libvgpu_sha256 = _sha256(Path(libvgpu))
    return Path(libvgpu)


def check_loaded(settings: Settings, result: RunResult) -> str:
    """Why the running sandbox is not running the run's build (empty when it is)."""
    try:
        info = json.loads((settings.sandbox_dir / "hami.json").read_text())
    except (OSError, ValueError) as error:
        return f"the sandbox wrote no hami.json ({error})"
    if not info.get("available"):
        return f"the sandbox did not load HAMi: {info.get('reason')}"
    current = info["releases"][0]
    if Path(current["build"]) != Path(result.hami_build):
        return f"the sandbox loaded HAMi from {current['build']}, not the run's build {result.hami_build}"
    if len(info["releases"]) != 1:
        return f"the sandbox loaded more than the run's HAMi: {[r['build'] for r in info['releases']]}"
    placed = list((Path(current["build"]) / "image").glob("k8s-vgpu/lib/nvidia/libvgpu.so*"))
    if len(placed) != 1 or _sha256(placed[0]) != result.libvgpu_sha256:
        return f"the HAMi image of the run does not hold the run's libvgpu.so ({placed})"
    return ""


def robot_command(out_dir: Path, settings: Settings, select: list[str], title: str) -> list[str]:
    includes = [arg for pattern in [*PREREQUISITES, *select] for arg in ("--include", pattern)]
    return [
        sys.executable, "-m", "robot",
        "--pythonpath", str(settings.suite_dir / "libraries"),
        "--variablefile", str(settings.suite_dir / "variables" / "sandbox.yaml"),
        "--variable", f"KUBECONFIG:{settings.sandbox_dir / 'kubeconfig'}",
        "--variable", "HAMI_PREVIOUS_CHART_VERSION:",
        "--skiponfailure", "known-bug:*",
        "--tagstatexclude", "HAMI-E2E-*", "--tagstatexclude", "HOST-*",
        "--name", title, "--console", "dotted",
        "--outputdir", str(out_dir), "--output", "output.xml", "--log", "log.html", "--report", "report.html",
        *includes, str(settings.suite_dir / "suites"),
    ]


def run_robot(argv: list[str], env: dict[str, str], out_dir: Path, deadline: float,
              cwd: Path) -> tuple[int, bool]:
    """robot (in ``cwd``) until it ends or ``deadline`` (monotonic) passes: then SIGINT, then SIGTERM later."""
    with (out_dir / "console.txt").open("w") as console:
        process = subprocess.Popen(argv, cwd=cwd, env=env, stdout=console, stderr=subprocess.STDOUT)
        try:
            return process.wait(timeout=max(1.0, deadline - time.monotonic())), False
        except subprocess.TimeoutExpired:
            return _stop(process), True
        except BaseException:   # the harness itself is being stopped: robot still writes its output
            _stop(process)
            raise


def _stop(process: subprocess.Popen[bytes]) -> int:
    """SIGINT (robot ends the running test and writes output.xml), SIGTERM after two minutes, SIGKILL after one."""
    process.send_signal(signal.SIGINT)
    try:
        return process.wait(timeout=120)
    except subprocess.TimeoutExpired:
        process.terminate()
    try:
        return process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


def read_outcomes(output: Path) -> dict[str, Outcome]:
    """Every test of robot's output by its ``HAMI-E2E-*`` ID tag."""
    outcomes = {}
    for test in ExecutionResult(str(output)).suite.all_tests:
        ids = [tag for tag in test.tags if tag.startswith("HAMI-E2E-")]
        if not ids:
            continue
        status = "NOT RUN" if test.status == "FAIL" and STOPPED in test.message else test.status
        outcomes[ids[0]] = Outcome(status, test.message, test.name)
    return outcomes


def run(trees: Trees, settings: Settings, select: list[str], out_dir: Path, title: str,
        baseline_passed: set[str] | None = None, claims: tuple[str, ...] = ()) -> RunResult:
    """The whole run for one source; never raises for a broken mutant (``RunResult.error`` says what broke).

    With ``baseline_passed`` (the IDs that pass on the unmutated source), up to ``CONFIRM_AT_MOST`` of them that
    failed (those in ``claims`` first) run a second time on the same sandbox, with preflight and install again:
    ``RunResult.confirmation``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    log = out_dir / "sandbox.log"
    result = RunResult(trees.label)
    started = time.monotonic()
    env = environment(settings, trees, out_dir)
    _sandbox(settings, env, log, "down")   # a sandbox left by an interrupted run of the harness
    try:
        if build(settings, env, log, result) is None:
            return result
        result.seconds["up"] = 0.0
        for attempt in range(START_ATTEMPTS):
            if attempt:   # HAMi is not running yet, so a start failure is the machine's (see START_ATTEMPTS)
                _sandbox(settings, env, log, "down")
                time.sleep(START_RETRY_PAUSE)
            rc, _, seconds = _sandbox(settings, env, log, "up", timeout=1200)
            result.seconds["up"] += seconds
            if rc == 0:
                break
        else:
            result.error = f"the sandbox did not start ({START_ATTEMPTS} tries): {_tail(log)}"
            return result
        result.error = check_loaded(settings, result)
        if result.error:
            return result
        robot_started = time.monotonic()
        argv = robot_command(out_dir, settings, select, title)
        result.robot_rc, result.timed_out = run_robot(argv, env, out_dir, robot_started + settings.max_seconds,
                                                          settings.suite_dir)
        result.seconds["robot"] = time.monotonic() - robot_started
        if not (out_dir / "output.xml").is_file():
            result.error = f"robot wrote no output.xml (rc {result.robot_rc}); see {out_dir / 'console.txt'}"
            return result
        result.tests = read_outcomes(out_dir / "output.xml")
        suspects = sorted((test for test, outcome in result.tests.items()
                           if outcome.status == "FAIL" and test in (baseline_passed or set())),
                          key=lambda test: (test not in claims, test))[:CONFIRM_AT_MOST]
        if suspects:
            confirm_started = time.monotonic()
            confirm_dir = out_dir / "confirm"
            confirm_dir.mkdir()
            argv = robot_command(confirm_dir, settings, suspects, f"{title} (confirmation)")
            run_robot(argv, env, confirm_dir, confirm_started + settings.max_seconds, settings.suite_dir)
            if (confirm_dir / "output.xml").is_file():
                result.confirmation = read_outcomes(confirm_dir / "output.xml")
            result.seconds["confirm"] = time.monotonic() - confirm_started
        return result
    finally:
        _, _, result.seconds["down"] = _sandbox(settings, env, log, "down")
        result.seconds["total"] = time.monotonic() - started
