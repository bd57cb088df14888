"""Mutation testing of the suite: build HAMi (and HAMi-core) from deliberately broken copies of its source and see
which tests catch each break.

    .venv/bin/python -m tools.mutants --list                   # the mutants, what each breaks, the tests it runs
    .venv/bin/python -m tools.mutants                          # baseline + every mutant, one at a time
    .venv/bin/python -m tools.mutants --only fit-ignores-used-memory node-spread-packs
    .venv/bin/python -m tools.mutants --include hami-core     # the mutants of one area or component
    .venv/bin/python -m tools.mutants --check                  # apply and compile every mutant, run nothing
    .venv/bin/python -m tools.mutants --only NAME --baseline results/mutants/run-<stamp>   # reuse a baseline

The suite (with the sandbox code) is copied into the results folder first, from the committed HEAD (``--worktree``:
the working tree as it is), so edits made while the harness runs do not mix into it. Each run starts its own sandbox
(``--sandbox-dir``, ``--port-offset``; default /tmp/mutant-sandbox and 7000) from the run's source trees, runs the
robot tests the mutant selects (plus preflight and install) and stops the sandbox.
The baseline is the unmutated source with the union of those selections; a mutant is killed by a test that passes on
the baseline and fails on the mutant twice (the second time in a confirmation run of up to three of the failed tests,
the claimed ones first).
Results: ``results/mutants/run-<UTC stamp>/`` (``table.md``, ``results.json``, one folder per run with robot's
output and the sandbox's log). Exit status: 0 when every mutant was killed, 1 when one survived or could not be run,
2 for bad usage or a mutant that no longer applies.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from . import report, runs, trees
from .catalog import MUTANTS, Mutant, by_name

RESULTS = runs.REPO / "results" / "mutants"


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tools.mutants", description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", metavar="NAME", default=[], help="run only these mutants")
    parser.add_argument("--include", nargs="+", metavar="TAG", default=[],
                        help="run only mutants of these areas or components (webhook, chart, filter, scoring, "
                             "scheduler, node-lock, device-plugin, hami, hami-core)")
    parser.add_argument("--list", action="store_true", help="list the selected mutants and exit")
    parser.add_argument("--check", action="store_true", help="apply and build the selected mutants; run no tests")
    parser.add_argument("--full", action="store_true",
                        help="run every HAMI-E2E test against each mutant instead of its tag subset (slow)")
    parser.add_argument("--claimed", action="store_true",
                        help="run only each mutant's claimed tests instead of its tag subset (quick)")
    parser.add_argument("--baseline", type=Path, metavar="DIR",
                        help="reuse the baseline of an earlier harness run (its folder) instead of running it")
    parser.add_argument("--max-minutes", type=float, default=10.0,
                        help="cap of one mutant's robot run (the baseline gets three times as much); default 10")
    parser.add_argument("--worktree", action="store_true",
                        help="test the working tree's suite (your uncommitted changes) instead of the committed HEAD")
    parser.add_argument("--sandbox-dir", type=Path, default=Path("/tmp/mutant-sandbox"))
    parser.add_argument("--port-offset", type=int, default=7000)
    return parser.parse_args(argv)


def select_mutants(args: argparse.Namespace) -> list[Mutant]:
    known = by_name()
    unknown = [name for name in args.only if name not in known]
    if unknown:
        raise SystemExit(f"unknown mutant(s): {', '.join(unknown)} (see --list)")
    chosen = [known[name] for name in args.only] if args.only else list(MUTANTS)
    if args.include:
        chosen = [mutant for mutant in chosen if mutant.tags & set(args.include)]
    if not chosen:
        raise SystemExit("no mutant matches the selection (see --list)")
    return chosen


def selection(mutant: Mutant | None, chosen: list[Mutant], full: bool, claimed: bool = False) -> list[str]:
    """The robot --include patterns of a run (the baseline's: the union of the mutants')."""
    if full:
        return ["HAMI-E2E-*"]
    def patterns(m: Mutant) -> tuple[str, ...]:
        return m.claims if claimed and m.claims else m.select
    return list(dict.fromkeys(patterns(mutant) if mutant else [p for m in chosen for p in patterns(m)]))


def say(message: str) -> None:
    print(f"[mutants {datetime.now().strftime('%H:%M:%S')}] {message}", flush=True)


def list_mutants(chosen: list[Mutant]) -> None:
    for mutant in chosen:
        edits = "; ".join(f"{edit.path}" for edit in mutant.edits)
        print(f"{mutant.name}  [{mutant.component}/{mutant.area}]\n    {mutant.breaks}\n    edits: {edits}\n"
              f"    runs: {' '.join([*runs.PREREQUISITES, *mutant.select])}\n"
              f"    claimed by: {' '.join(mutant.claims) or '-'}")


def check(chosen: list[Mutant], base: trees.BaseSources, settings: runs.Settings, folder: Path) -> int:
    """Apply and build every chosen mutant (cached builds are reused); nothing is started."""
    broken = 0
    for mutant in chosen:
        run_trees = trees.for_run(base, mutant)
        result = runs.RunResult(mutant.name)
        out = folder / mutant.name
        out.mkdir(parents=True, exist_ok=True)
        runs.build(settings, runs.environment(settings, run_trees, out), out / "sandbox.log", result)
        broken += bool(result.error)
        say(f"{mutant.name}: {result.error or 'builds'} ({result.seconds.get('build', 0):.0f} s)")
    return 1 if broken else 0


def baseline_from(folder: Path) -> tuple[runs.RunResult, str]:
    """The baseline of an earlier harness run and the suite it ran."""
    output = folder / "baseline" / "output.xml"
    if not output.is_file():
        raise SystemExit(f"{folder} holds no baseline/output.xml of an earlier harness run")
    try:
        earlier = json.loads((folder / "results.json").read_text())
    except (OSError, ValueError):
        earlier = {}
    seconds = earlier.get("baseline", {}).get("seconds", {})
    return runs.RunResult("baseline", tests=runs.read_outcomes(output), seconds=seconds), earlier.get("suite", "")


def describe(result: runs.RunResult) -> str:
    if result.error:
        return f"error: {result.error}"
    counts = {}
    for outcome in result.tests.values():
        counts[outcome.status] = counts.get(outcome.status, 0) + 1
    return ", ".join(f"{n} {status.lower()}" for status, n in sorted(counts.items())) or "no tests ran"


def _stop_on_signals() -> None:
    """SIGTERM and SIGINT end the harness through its cleanup (robot stopped, sandbox down), also when a
    non-interactive shell started it in the background with SIGINT ignored."""
    def stop(number: int, _frame: object) -> None:
        raise SystemExit(f"mutants: stopped by signal {number}; the sandbox is being stopped")
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    _stop_on_signals()
    chosen = select_mutants(args)
    if args.list:
        list_mutants(chosen)
        return 0
    try:
        base = trees.BaseSources.resolve()
        trees.check_applies(base, chosen)
    except trees.MutationError as error:
        print(f"mutants: {error}", file=sys.stderr)
        return 2
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    folder = RESULTS / f"run-{stamp}"   # not a bare stamp: results/<release>/<stamp>/ is the run archive's pattern
    folder.mkdir(parents=True)
    try:
        suite = trees.snapshot_suite(folder / "suite", args.worktree)
    except trees.MutationError as error:
        print(f"mutants: {error}", file=sys.stderr)
        return 2
    settings = runs.Settings(args.sandbox_dir, args.port_offset, args.max_minutes * 60, folder / "suite")
    say(f"{len(chosen)} mutant(s) of {base.describe()}; suite {suite}; results in {folder}")
    if args.check:
        return check(chosen, base, settings, folder)
    started = time.monotonic()
    meta = {"started": stamp, "sources": base.describe(), "suite": suite, "sandbox_dir": str(args.sandbox_dir),
            "port_offset": args.port_offset, "full": args.full, "claimed": args.claimed}
    if args.baseline:
        baseline, baseline_suite = baseline_from(args.baseline)
        say(f"baseline from {args.baseline}: {describe(baseline)}")
        if baseline_suite != suite:
            say(f"note: that baseline ran suite {baseline_suite or '?'}, this run tests suite {suite}")
    else:
        say("baseline (unmutated source) ...")
        baseline_settings = runs.Settings(args.sandbox_dir, args.port_offset, args.max_minutes * 180, folder / "suite")
        baseline = runs.run(trees.for_run(base, None), baseline_settings,
                            selection(None, chosen, args.full, args.claimed), folder / "baseline", "Mutation baseline")
        say(f"baseline: {describe(baseline)} in {baseline.seconds.get('total', 0):.0f} s")
        if baseline.error:
            return 1
    verdicts: list[report.Verdict] = []
    for number, mutant in enumerate(chosen, 1):
        say(f"{number}/{len(chosen)} {mutant.name}: {mutant.breaks}")
        result = runs.run(trees.for_run(base, mutant), settings, selection(mutant, chosen, args.full, args.claimed),
                          folder / mutant.name, f"Mutant {mutant.name}", report.passed_tests(baseline), mutant.claims)
        verdict = report.judge(mutant, result, baseline)
        verdicts.append(verdict)
        say(f"{mutant.name}: {verdict.status.upper()}"
            + (f" by {', '.join(verdict.killed_by)}" if verdict.killed_by else f" ({describe(result)})")
            + (f"; failed once only (flaky): {', '.join(verdict.unconfirmed)}" if verdict.unconfirmed else "")
            + f" in {result.seconds.get('total', 0):.0f} s")
        report.write(folder, verdicts, baseline, time.monotonic() - started, meta)
    print(report.write(folder, verdicts, baseline, time.monotonic() - started, meta))
    say(f"table: {folder / 'table.md'}")
    return 0 if all(verdict.status == "killed" for verdict in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
