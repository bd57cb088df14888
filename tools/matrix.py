"""``tools/run-e2e --matrix FILE``: the suite once per cell of a compatibility matrix on the sandbox.

A matrix file names Kubernetes versions and GPU topologies; every pair is a cell (``k1.34-a100``)::

    name: sandbox                      # the matrix folder's name (default: the file's stem)
    kubernetes: ["1.34", "1.35", "1.36"]
    topologies:
      - name: h100                     # the cell name's second half
        topology: variables/sandbox_topology.yaml
      - name: a100
        topology: variables/sandbox_topology_a100.yaml
        variables: [variables/sandbox_a100.yaml]    # robot variable files of that topology (they win)

For each cell the sandbox is stopped and started again with ``HAMI_E2E_KUBE_VERSION`` and ``HAMI_E2E_TOPOLOGY``
set (so the suite's own ``sandbox up`` finds it running), then the suite runs as ``tools/run_suites.py`` runs it,
with the rest of the command line, archived under release ``<HAMI_CHART_VERSION>+<cell>`` with the metadata
``Matrix cell``. The last cell's sandbox keeps running. The matrix folder ``<results>/matrix/<name>/<UTC stamp>/``
gets ``matrix.json`` (cells, timings, run folders), ``index.html`` (the matrix page) and one combined report of
every cell (``rebot``: ``report.html``, ``log.html``, ``output.xml``), each cell a top-level suite; the run index
links the matrix pages.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import yaml
from robot.api import SuiteVisitor

import archive
import runners
from release import release_name, safe_folder_name
from robot_args import DEFAULT_VARIABLE_FILE, REPO_ROOT, UsageError

MATRIX_DIR = "matrix"
MATRIX_FILE = "matrix.json"
CELL_METADATA = "Matrix cell"
KUBE_VERSION_ENV = "HAMI_E2E_KUBE_VERSION"
TOPOLOGY_ENV = "HAMI_E2E_TOPOLOGY"
SANDBOX_TIMEOUT_S = 3600   # a first `sandbox up` of a version builds Kubernetes (about 9 minutes on 2 cores)


@dataclass(frozen=True)
class Cell:
    """One Kubernetes version on one topology."""

    kubernetes: str
    label: str            # the topology's name in the matrix file
    topology: str         # path, relative to the checkout unless absolute
    variables: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return f"k{self.kubernetes}-{self.label}"

    @property
    def title(self) -> str:
        return f"Kubernetes {self.kubernetes} / {self.label}"


@dataclass
class CellResult:
    """What the matrix page shows of one cell (also saved in matrix.json)."""

    name: str
    title: str
    kubernetes: str
    label: str
    topology: str
    variables: list[str]
    release: str = ""
    run_path: str = ""          # the cell's run folder, relative to the results root
    down_s: float = 0.0
    up_s: float = 0.0
    suite_s: float = 0.0
    rc: int | None = None
    error: str = ""


def load(path: Path) -> tuple[str, list[Cell]]:
    """The matrix's name and its cells (every Kubernetes version with every topology, versions outer)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        versions = [str(version).lstrip("v") for version in data["kubernetes"]]
        topologies = [(str(item["name"]), str(item["topology"]), tuple(str(v) for v in item.get("variables") or []))
                      for item in data["topologies"]]
    except (OSError, KeyError, TypeError, yaml.YAMLError) as error:
        raise UsageError(f"cannot read the matrix {path}: {error!r} (it needs 'kubernetes' and 'topologies')") \
            from None
    if not versions or not topologies:
        raise UsageError(f"the matrix {path} needs at least one Kubernetes version and one topology")
    cells = [Cell(version, label, topology, variables) for version in versions
             for label, topology, variables in topologies]
    names = [cell.name for cell in cells]
    if len(set(names)) != len(names):
        raise UsageError(f"the matrix {path} names a cell twice: {names}")
    for cell in cells:
        for file in (cell.topology, *cell.variables):
            if not _resolve(file).is_file():
                raise UsageError(f"matrix cell {cell.name}: {file} is not a file")
    known = _sandbox_versions()
    unknown = sorted({cell.kubernetes for cell in cells} - set(known))
    if unknown:
        raise UsageError(f"the sandbox builds Kubernetes {', '.join(known)}, not {', '.join(unknown)}")
    return str(data.get("name") or path.stem), cells


def _resolve(file: str) -> Path:
    path = Path(file)
    return path if path.is_absolute() else REPO_ROOT / path


def _sandbox_versions() -> list[str]:
    """The Kubernetes minors the sandbox has wrapper modules for (asked of the sandbox package itself)."""
    code = "import json; from sandbox import config; print(json.dumps(list(config.kube_modules())))"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise UsageError(f"cannot list the sandbox's Kubernetes versions: {result.stderr.strip()[-300:]}")
    return json.loads(result.stdout)


def strip_matrix_options(argv: list[str]) -> tuple[list[str], str | None]:
    """``argv`` without ``--matrix FILE`` and ``--release NAME`` (the matrix names each cell's release), and the
    ``--release`` value given, if any."""
    rest, release, skip = [], None, False
    for index, arg in enumerate(argv):
        if skip:
            skip = False
            continue
        name, eq, value = arg.partition("=")
        if name in ("--matrix", "--release"):
            if not eq:
                value = argv[index + 1] if index + 1 < len(argv) else ""
                skip = True
            if name == "--release":
                release = value
            continue
        rest.append(arg)
    return rest, release


def run_matrix(matrix_file: Path, argv: list[str], results_root: Path, run_cell: Callable[[list[str]], int],
               sandbox: Callable[[str], tuple[float, int, str]] | None = None) -> int:
    """Run every cell of ``matrix_file``; ``run_cell(cell_argv)`` runs one cell's suite as run_suites does and
    returns robot's exit code, ``sandbox(command)`` runs ``python -m sandbox <command>`` (default: `_sandbox`).
    Returns the combined report's exit code (failed tests), at least 1 when a cell's sandbox did not start."""
    sandbox = sandbox or _sandbox
    from matrix_page import write_matrix_page

    name, cells = load(matrix_file)
    rest, explicit_release = strip_matrix_options(argv)
    user_files = _variable_files(rest)
    folder = archive.new_run_dir(results_root / MATRIX_DIR, safe_folder_name(name))
    record = {"name": name, "file": str(matrix_file), "started": _now(), "argv": rest, "cells": []}
    print(f"[ matrix ] {len(cells)} cell(s) of {matrix_file}: {', '.join(cell.name for cell in cells)}", flush=True)
    for number, cell in enumerate(cells, 1):
        print(f"[ matrix ] cell {number}/{len(cells)}: {cell.title} ({cell.topology})", flush=True)
        files = [*cell.variables, *user_files]
        if not user_files:
            files.append(str(DEFAULT_VARIABLE_FILE))
        base = explicit_release or release_name(None, [str(_resolve(f)) for f in files], [])
        result = CellResult(cell.name, cell.title, cell.kubernetes, cell.label, cell.topology, list(cell.variables),
                            release=safe_folder_name(f"{base}+{cell.name}"))
        os.environ[KUBE_VERSION_ENV] = cell.kubernetes
        os.environ[TOPOLOGY_ENV] = str(_resolve(cell.topology))
        result.down_s, _, _ = sandbox("down")
        result.up_s, up_rc, up_output = sandbox("up")
        if up_rc != 0:
            result.error = f"sandbox up failed (exit {up_rc}): " + " ".join(up_output.strip().splitlines()[-3:])
            print(f"[ matrix ] {cell.name}: {result.error}", flush=True)
        else:
            cell_argv = [arg for file in files if file not in user_files
                         for arg in ("--variablefile", str(_resolve(file)))]
            cell_argv += ["--results-root", str(results_root), "--release", result.release,
                          "--metadata", f"{CELL_METADATA}:{cell.title}", *rest]
            started = time.monotonic()
            result.rc = run_cell(cell_argv)
            result.suite_s = round(time.monotonic() - started, 1)
            newest = archive.run_dirs(results_root)
            mine = [run for run in newest if run.parent.name == result.release]
            result.run_path = mine[0].relative_to(results_root).as_posix() if mine else ""
        record["cells"].append(asdict(result))
        _save(folder, record)
    record["finished"] = _now()
    outputs = [results_root / cell["run_path"] / "output.xml" for cell in record["cells"] if cell["run_path"]]
    outputs = [path for path in outputs if path.is_file()]
    rc = _combine(folder, name, outputs) if outputs else runners.RC_DATA_ERROR
    record["combined_rc"] = rc
    _save(folder, record)
    page = write_matrix_page(folder, results_root, record)
    print(f"[ matrix ] Matrix page: {page}", flush=True)
    started_failed = any(cell["error"] for cell in record["cells"])
    return max(rc, 1) if started_failed else rc


def _variable_files(argv: list[str]) -> list[str]:
    files = []
    for index, arg in enumerate(argv):
        name, eq, value = arg.partition("=")
        if name in ("--variablefile", "-V"):
            files.append(value if eq else (argv[index + 1] if index + 1 < len(argv) else ""))
    return [file for file in files if file]


def _sandbox(command: str) -> tuple[float, int, str]:
    """``python -m sandbox <command>`` in the checkout with this process's environment: (seconds, rc, output)."""
    started = time.monotonic()
    print(f"$ HAMI_E2E_KUBE_VERSION={os.environ.get(KUBE_VERSION_ENV)} "
          f"HAMI_E2E_TOPOLOGY={os.environ.get(TOPOLOGY_ENV)} {sys.executable} -m sandbox {command}", flush=True)
    process = subprocess.Popen([sys.executable, "-m", "sandbox", command], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    lines = []
    assert process.stdout is not None
    for line in process.stdout:   # the sandbox's own progress lines (a first build prints a heartbeat)
        print(line, end="", flush=True)
        lines.append(line)
    try:
        rc = process.wait(timeout=SANDBOX_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        rc = process.wait()
    return round(time.monotonic() - started, 1), rc, "".join(lines)


def _combine(folder: Path, name: str, outputs: list[Path]) -> int:
    """One report of every cell: ``rebot`` over the cells' output.xml, each cell a top suite named after it."""
    return runners.call([runners.PYTHON, "-m", "robot.rebot", "--name", f"Compatibility matrix {name}",
                         "--pythonpath", str(Path(__file__).resolve().parent),
                         "--prerebotmodifier", "matrix.CellNames",
                         "--tagstatexclude", "HAMI-E2E-*", "--tagstatexclude", "HOST-*",
                         *runners.outputs(folder), *map(str, outputs)])


class CellNames(SuiteVisitor):
    """rebot modifier: the combined report's top suites are named after their cell (``Matrix cell`` metadata)."""

    def start_suite(self, suite) -> bool:
        if suite.parent is None:
            for child in suite.suites:
                cell = child.metadata.get(CELL_METADATA)
                if cell:
                    child.name = cell
        return False


def _save(folder: Path, record: dict) -> None:
    (folder / MATRIX_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")
