"""How a run executes: one robot pass, or (with pabot) a first robot pass for the preflight and the install, pabot
for the parallel tests and one serial robot pass, then rebot.

Every command runs as a subprocess of this venv's Python, so a run is exactly what ``robot`` / ``pabot`` /
``rebot`` would do from the command line, with the archive's output options put in front.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from robot.conf import RobotSettings
from robot.errors import DataError
from robot.running import TestSuiteBuilder
from robot_args import parse_robot_options

from hami_e2e.core.ownership import RUN_ID_ENV, RunLock, new_run_id

PYTHON = sys.executable
RC_DATA_ERROR = 252  # robot: invalid data or options, or no tests matched the selection
#: Suites a parallel run runs first, on their own and in order: the preflight verdict and HAMi's installation, which
#: every other suite tests. Their test IDs (``FIRST_IDS``) keep them out of the later passes.
FIRST_SUITES = ("Preflight", "Install")
FIRST_IDS = ("HAMI-E2E-00?", "HAMI-E2E-01?")


def outputs(run_dir: Path, output: str = "output.xml", final: bool = True) -> list[str]:
    """Robot/rebot output options into ``run_dir``; intermediate passes write only their output.xml."""
    if final:
        return ["--outputdir", str(run_dir), "--output", output, "--log", "log.html",
                "--report", "report.html", "--xunit", "xunit.xml"]
    return ["--outputdir", str(run_dir), "--output", output, "--log", "NONE", "--report", "NONE"]


def call(command: list[str], cwd: str | None = None, env: dict | None = None) -> int:
    """Run one command in the foreground.

    A first Ctrl-C reaches robot too (same process group), which then stops gracefully and still writes its
    outputs; we keep waiting for it so the run is archived. A second Ctrl-C makes robot stop at once.
    """
    print("$ " + subprocess.list2cmdline(command), flush=True)
    process = subprocess.Popen(command, cwd=cwd, env=env)
    while True:
        try:
            return process.wait()
        except KeyboardInterrupt:
            print("\n[ run_suites ] Interrupted: waiting for robot to write its outputs "
                  "(Ctrl-C again to force).", file=sys.stderr, flush=True)


def run_robot(run_dir: Path, extra: list[str], robot_argv: list[str]) -> int:
    """The plain run: robot writes every output straight into the run folder."""
    return call([PYTHON, "-m", "robot", *outputs(run_dir), *extra, *robot_argv])


def run_pabot(run_dir: Path, processes: int, split: str, serial_tags: list[str], pabot_args: list[str],
              extra: list[str], robot_argv: list[str]) -> int:
    """A first robot pass for the suites everything else needs (``FIRST_SUITES``: the preflight and HAMi's
    installation), a parallel pass (pabot) for the tests without a serial tag, a serial pass (robot) for the rest,
    then merge.

    A pass that would select no tests is left out (robot refuses to run an empty selection); when none selects
    anything, a plain robot run reports the selection error as usual.
    """
    first_select = [arg for name in FIRST_SUITES for arg in ("--suite", name)]
    after_first = [arg for pattern in FIRST_IDS for arg in ("--exclude", pattern)]
    parallel_select = [*after_first, *(arg for tag in serial_tags for arg in ("--exclude", tag))]
    serial_select = [*after_first, "--exclude", "NOT " + " NOT ".join(serial_tags)]
    n_first = selected_tests([*first_select, *robot_argv])
    n_parallel = selected_tests([*parallel_select, *robot_argv])
    n_serial = selected_tests([*serial_select, *robot_argv])
    print(f"[ run_suites ] first pass ({', '.join(FIRST_SUITES)}): {_count(n_first)} test(s); pabot pass: "
          f"{_count(n_parallel)} test(s); serial pass (tags {', '.join(serial_tags)}): {_count(n_serial)} test(s)",
          flush=True)
    if n_first == 0 and n_parallel == 0 and n_serial == 0:
        return run_robot(run_dir, extra, robot_argv)
    # One run in several robot processes: they share the run id and this process holds the run's lock, so no pass
    # takes what an earlier one installed for an ended run's leftovers; HAMi installed by the first pass stays for
    # the later ones (the uninstall suite, in the serial pass, removes it; without it the next run's preflight does).
    lock = RunLock(new_run_id())
    lock.acquire()
    os.environ[RUN_ID_ENV] = lock.run_id
    keep_hami = ["--variable", "HAMI_UNINSTALL_AFTER:never"]
    passes: list[tuple[Path, int]] = []
    try:
        if n_first != 0:
            output = run_dir / "first.xml"
            rc = call([PYTHON, "-m", "robot", *outputs(run_dir, output.name, final=False), *extra, *keep_hami,
                       *first_select, *robot_argv])
            passes.append((output, rc))
        if n_parallel != 0:
            output = run_dir / "parallel.xml"
            rc = _pabot_pass(run_dir, output, processes, split, pabot_args,
                             [*extra, *keep_hami, *parallel_select], robot_argv)
            passes.append((output, rc))
        if n_serial != 0:
            output = run_dir / "serial.xml"
            rc = call([PYTHON, "-m", "robot", *outputs(run_dir, output.name, final=False), *extra,
                       *keep_hami, *serial_select, *robot_argv])
            passes.append((output, rc))
    finally:
        del os.environ[RUN_ID_ENV]
        lock.release()
    produced = [output for output, _ in passes if output.is_file()]
    rc = merge(run_dir, produced) if produced else RC_DATA_ERROR
    errors = [pass_rc for output, pass_rc in passes if pass_rc > 250 or not output.is_file()]
    return max([rc, *errors])


def _pabot_pass(run_dir: Path, output: Path, processes: int, split: str, pabot_args: list[str],
                extra: list[str], robot_argv: list[str]) -> int:
    split_args = ["--testlevelsplit"] if split == "test" else []
    env = dict(os.environ, PATH=os.pathsep.join([str(Path(PYTHON).parent), os.environ.get("PATH", "")]))
    suitenames = Path(".pabotsuitenames")
    had_suitenames = suitenames.exists()
    rc = call([PYTHON, "-m", "pabot.pabot", "--processes", str(processes), *split_args, *pabot_args,
               *outputs(run_dir, output.name, final=False), *extra, *robot_argv], env=env)
    if not had_suitenames and suitenames.exists():  # pabot's split cache: keep it with the run, not in the repo
        shutil.move(str(suitenames), str(run_dir / "pabotsuitenames.txt"))
    return rc


def selected_tests(robot_argv: list[str]) -> int | None:
    """How many tests robot would run with these options, without running anything (None: cannot tell)."""
    try:
        opts, paths = parse_robot_options(robot_argv)
        opts = {name: value for name, value in opts.items()
                if value is not None and name not in ("help", "version", "argumentfile", "prerunmodifier")}
        settings = RobotSettings(opts, output="NONE", log="NONE", report="NONE", xunit="NONE")
        suite = TestSuiteBuilder(included_extensions=settings.extension, included_files=settings.parse_include,
                                 rpa=settings.rpa, lang=settings.languages).build(*paths)
        suite.configure(**settings.suite_config)
    except DataError as error:
        return 0 if "contains no " in str(error) else None
    except Exception:  # noqa: BLE001 - counting is an optimisation; robot reports real problems itself
        return None
    return suite.test_count


def _count(value: int | None) -> str:
    return "?" if value is None else str(value)


def merge(run_dir: Path, sources: list[Path], output: str = "output.xml") -> int:
    """``rebot --merge`` the sources (the first is the base) into the run folder's final outputs.

    The merged report marks re-executed tests ("has been re-executed and results merged") and tests added
    from a later output. Rebot's exit code, like robot's, is the number of failed tests.
    """
    merge_flag = ["--merge"] if len(sources) > 1 else []
    return call([PYTHON, "-m", "robot.rebot", *merge_flag, *outputs(run_dir, output), *map(str, sources)])


def rerun_failed(run_dir: Path, rerun_name: str, extra: list[str], robot_argv: list[str], cwd: str | None) -> int:
    """Rerun the failed tests of ``run_dir/output.xml`` into ``rerun_name``, written next to it."""
    return call([PYTHON, "-m", "robot", *outputs(run_dir, rerun_name, final=False),
                 "--rerunfailed", str(run_dir / "output.xml"), *extra, *robot_argv], cwd=cwd)
