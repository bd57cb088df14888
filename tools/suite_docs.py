"""Keyword docs (libdoc) and a test catalogue (testdoc) written into each run folder, so a report always ships
the docs of the keywords and tests it ran."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from robot_args import REPO_ROOT

LIBRARIES_DIR = REPO_ROOT / "libraries"
# (library file, file name in the run folder); the first one is the suite's main keyword library.
LIBRARIES = (("HamiLibrary.py", "libdoc.html"), ("HostLibrary.py", "HostLibrary.html"))
# The libraries testers use beside ours (resources/metrics.resource, resources/kube.resource), by import name;
# KubeLibrary's own switch keeps it from loading a kubeconfig for its docs.
TESTER_LIBRARIES = (("RequestsLibrary", "RequestsLibrary.html"), ("KubeLibrary", "KubeLibrary.html"))
# robot options that testdoc understands with the same meaning, so the catalogue shows what this run selected.
TESTDOC_MULTI = ("include", "exclude", "test", "suite", "metadata", "settag")
TESTDOC_SINGLE = ("name", "doc")
TIMEOUT_S = 300


def write_libdocs(run_dir: Path, libraries_dir: Path = LIBRARIES_DIR) -> list[str]:
    """Run libdoc for every library in `LIBRARIES` that exists; returns one line per library for the console."""
    notes = []
    for file_name, output_name in LIBRARIES:
        library = libraries_dir / file_name
        if not library.is_file():
            if file_name == LIBRARIES[0][0]:
                notes.append(f"libdoc skipped: {library} does not exist yet")
            continue
        command = [sys.executable, "-m", "robot.libdoc", "--pythonpath", str(libraries_dir),
                   str(library), str(run_dir / output_name)]
        notes.append(_run(command, f"libdoc {file_name}"))
    for name, output_name in TESTER_LIBRARIES:
        command = [sys.executable, "-m", "robot.libdoc", name, str(run_dir / output_name)]
        notes.append(_run(command, f"libdoc {name}", dict(os.environ, INIT_FOR_LIBDOC_ONLY="1")))
    return notes


def write_testdoc(run_dir: Path, paths: list[str], robot_options: dict, title: str) -> str:
    """Run testdoc over the run's suite paths with the run's test selection."""
    command = [sys.executable, "-m", "robot.testdoc", "--title", title.replace(" ", "_")]
    for name in TESTDOC_MULTI:
        for value in robot_options.get(name) or []:
            command += [f"--{name}", value]
    for name in TESTDOC_SINGLE:
        if robot_options.get(name):
            command += [f"--{name}", robot_options[name]]
    command += [*paths, str(run_dir / "testdoc.html")]
    return _run(command, "testdoc")


def _run(command: list[str], what: str, env: dict[str, str] | None = None) -> str:
    """Docs never change a run's exit code: a failure is reported and the run goes on."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S, check=False, env=env)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"{what} FAILED: {error}"
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        return f"{what} FAILED (rc {done.returncode}): {detail[-1] if detail else 'no output'}"
    return f"{what}: {done.stdout.strip().splitlines()[-1] if done.stdout.strip() else 'done'}"
