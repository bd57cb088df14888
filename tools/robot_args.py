"""Command-line handling for ``tools/run_suites.py``: wrapper options, pabot options, robot options and paths.

The wrapper passes robot's own options through untouched; it only needs to know three things about them:
which are the suite paths, which variable files and ``--variable`` values are in effect (for the release
name), and that the user is not trying to move the outputs that the archive owns.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from robot.errors import DataError, Information
from robot.run import USAGE
from robot.utils import ArgumentParser

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SUITES = REPO_ROOT / "suites"
DEFAULT_VARIABLE_FILE = REPO_ROOT / "variables" / "sandbox.yaml"
DEFAULT_RESULTS_ROOT = REPO_ROOT / "results"
#: Tests pabot never runs in parallel: those that restart shared parts, and those whose verdict needs GPUs no other
#: test uses (placement, over-commit, pinning).
DEFAULT_SERIAL_TAGS = ("disruptive", "needs-idle-gpus")
KNOWN_BUG_TAGS = "known-bug:*"  # robot --skiponfailure pattern: a known bug that fails is reported as SKIP

# Robot options that decide where outputs go: the archive owns them.
ARCHIVE_OWNED = ("outputdir", "output", "log", "report", "xunit", "timestampoutputs")

# pabot's own options (pabot 5.2.2, pabot/arguments.py): flags and options that take one value.
PABOT_FLAGS = {"--verbose", "--testlevelsplit", "--pabotlib", "--no-pabotlib", "--artifactsinsubfolders",
               "--chunk", "--no-rebot"}
PABOT_VALUES = {"--hive", "--processes", "--resourcefile", "--pabotlibhost", "--pabotlibport",
                "--pabotprerunmodifier", "--processtimeout", "--suitesfrom", "--artifacts", "--shard",
                "--pabotconsole"}

HELP = f"""Usage: run_suites.py [wrapper options] [robot options] [paths]

Runs the suites with robot (or pabot) and archives the run under
<results root>/<release>/<UTC timestamp>/ with report.html, log.html, output.xml,
xunit.xml, libdoc.html and testdoc.html, then refreshes <results root>/index.html.
Default path: suites/. Default variable file: variables/sandbox.yaml (when no
--variablefile is given and the file exists). Exit code: robot's.

Wrapper options:
  --release NAME        Archive under this release instead of HAMI_CHART_VERSION
                        from the variable files ('unknown' when none is found).
  --matrix FILE         Run the suite once per cell of a compatibility matrix
                        (Kubernetes versions x sandbox GPU topologies, see
                        tools/matrix.py and variables/matrix_sandbox.yaml): the
                        sandbox is restarted per cell, each cell archived as
                        release <release>+<cell>, plus a matrix page and one
                        combined report under <results root>/matrix/.
  --results-root DIR    Archive root (default: {DEFAULT_RESULTS_ROOT}).
  --pabot N             Run through pabot with N processes and --testlevelsplit;
                        tests tagged with a serial tag run afterwards in one
                        serial robot pass, and the two outputs are merged.
  --pabot-split LEVEL   'test' (default) or 'suite': pabot's split level.
  --serial-tag TAG      Tag whose tests never run in parallel (repeatable;
                        default: {', '.join(DEFAULT_SERIAL_TAGS)}).
  --rerun-failed        Rerun the failed tests of the last archived run (or of
                        --run-dir) into the same folder and merge them with
                        rebot --merge. Robot options given here are added to
                        those the run was started with.
  --run-dir DIR         The run folder --rerun-failed works on.
  --no-docs             Skip the libdoc and testdoc steps.
  --strict-known-bugs   Report tests tagged {KNOWN_BUG_TAGS} (e.g. known-bug:HAMi-1234)
                        that fail as FAIL. By default robot gets
                        --skiponfailure {KNOWN_BUG_TAGS}: such a test that fails is
                        reported as SKIP with its failure message (visible, not
                        red), one that passes as PASS. --rerun-failed keeps the
                        setting of the run it reruns unless this is given.
  -h, --help            This help.

Any other option is passed to robot (and pabot options such as --no-pabotlib
to pabot), e.g. --include smoke --exclude slow --variablefile variables/lab.yaml
--variable NAME:value --test "*Memory*". The archive owns --outputdir, --output,
--log, --report, --xunit and --timestampoutputs; use --results-root instead.
"""


class UsageError(Exception):
    """A command line the wrapper cannot run; the message says why."""


@dataclass
class Invocation:
    """One parsed ``run_suites.py`` command line."""

    release: str | None = None
    matrix: Path | None = None
    results_root: Path = DEFAULT_RESULTS_ROOT
    pabot: int | None = None
    pabot_split: str = "test"
    serial_tags: list[str] = field(default_factory=list)
    rerun_failed: bool = False
    run_dir: Path | None = None
    docs: bool = True
    strict_known_bugs: bool = False
    help: bool = False
    pabot_args: list[str] = field(default_factory=list)  # pabot-only options, in the order given
    robot_argv: list[str] = field(default_factory=list)  # robot options and paths, as given (+ defaults)
    paths: list[str] = field(default_factory=list)  # suite paths as robot sees them; suites/ when none given
    variable_files: list[str] = field(default_factory=list)  # as given to robot, first one wins
    variables: list[str] = field(default_factory=list)  # --variable values, last one wins
    robot_options: dict = field(default_factory=dict)  # robot's parse of robot_args

    @property
    def effective_serial_tags(self) -> list[str]:
        return self.serial_tags or list(DEFAULT_SERIAL_TAGS)


def parse_command_line(argv: list[str]) -> Invocation:
    """Parse ``argv`` (without the program name); raises `UsageError` on a command line robot would refuse."""
    inv = Invocation()
    rest = _take_wrapper_options(argv, inv)
    if inv.help:
        return inv
    rest = _take_pabot_options(rest, inv)
    opts, paths = parse_robot_options(rest)
    owned = [f"--{name}" for name in ARCHIVE_OWNED if opts.get(name) not in (None, False)]
    if owned:
        raise UsageError(f"{', '.join(owned)} cannot be used: the archive decides where outputs go "
                         f"(use --results-root DIR to move the whole archive).")
    if inv.rerun_failed and inv.matrix:
        raise UsageError("--rerun-failed works on one run folder, not on a --matrix run.")
    if inv.rerun_failed and paths:
        raise UsageError("--rerun-failed reruns the paths of the original run: give no paths.")
    inv.robot_options = opts
    inv.robot_argv = list(rest)
    inv.paths = list(paths)
    if not paths and not inv.rerun_failed:
        inv.paths = [_display_path(DEFAULT_SUITES)]
        inv.robot_argv.append(inv.paths[0])
    inv.variable_files = list(opts.get("variablefile") or [])
    inv.variables = list(opts.get("variable") or [])
    if not inv.variable_files and DEFAULT_VARIABLE_FILE.is_file() and not inv.rerun_failed:
        default = _display_path(DEFAULT_VARIABLE_FILE)
        inv.variable_files = [default]
        inv.robot_argv = ["--variablefile", default, *inv.robot_argv]
    if inv.pabot is not None and inv.pabot < 1:
        raise UsageError("--pabot needs a number of processes of at least 1.")
    if inv.pabot_split not in ("test", "suite"):
        raise UsageError("--pabot-split is 'test' or 'suite'.")
    if inv.pabot_args and inv.pabot is None:
        raise UsageError(f"{inv.pabot_args[0]} is a pabot option: add --pabot N to run through pabot.")
    return inv


def _take_wrapper_options(argv: list[str], inv: Invocation) -> list[str]:
    values = {"--release", "--matrix", "--results-root", "--pabot", "--pabot-split", "--serial-tag", "--run-dir"}
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        name, eq, inline = arg.partition("=")
        if arg in ("-h", "--help"):
            inv.help = True
        elif arg == "--rerun-failed":
            inv.rerun_failed = True
        elif arg == "--no-docs":
            inv.docs = False
        elif arg == "--strict-known-bugs":
            inv.strict_known_bugs = True
        elif name in values:
            if eq:
                value = inline
            elif i + 1 < len(argv):
                i += 1
                value = argv[i]
            else:
                raise UsageError(f"{name} needs a value.")
            _set_wrapper_value(inv, name, value)
        else:
            rest.append(arg)
        i += 1
    return rest


def _set_wrapper_value(inv: Invocation, name: str, value: str) -> None:
    if name == "--release":
        inv.release = value
    elif name == "--matrix":
        inv.matrix = Path(value).resolve()
    elif name == "--results-root":
        inv.results_root = Path(value).resolve()
    elif name == "--pabot":
        try:
            inv.pabot = int(value)
        except ValueError:
            raise UsageError(f"--pabot needs a number of processes, got '{value}'.") from None
    elif name == "--pabot-split":
        inv.pabot_split = value
    elif name == "--serial-tag":
        inv.serial_tags.append(value)
    elif name == "--run-dir":
        inv.run_dir = Path(value).resolve()


def _take_pabot_options(args: list[str], inv: Invocation) -> list[str]:
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in PABOT_FLAGS:
            inv.pabot_args.append(arg)
        elif arg in PABOT_VALUES and i + 1 < len(args):
            inv.pabot_args += [arg, args[i + 1]]
            i += 1
        else:
            rest.append(arg)
        i += 1
    return rest


def parse_robot_options(args: list[str]) -> tuple[dict, list[str]]:
    """Robot's own parse of its options: (options by long name, suite paths)."""
    parser = ArgumentParser(USAGE, auto_help=False, auto_version=False,
                            env_options="ROBOT_OPTIONS")
    try:
        return parser.parse_args(args)
    except (DataError, Information) as error:
        raise UsageError(f"Invalid robot options: {error}") from None


def _display_path(path: Path) -> str:
    """A path relative to the current directory when it is inside it, so commands stay readable."""
    try:
        return os.path.relpath(path)
    except ValueError:
        return str(path)
