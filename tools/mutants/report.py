"""Verdicts and the table: which selected tests each mutant failed, which of those pass on the baseline (the kills),
written as ``table.md`` and ``results.json`` into the harness's results folder and printed at the end."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .catalog import Mutant
from .runs import RunResult


@dataclass
class Verdict:
    mutant: str
    area: str
    breaks: str
    status: str                     # killed, survived, error
    killed_by: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)      # every failed test, also those failing on the baseline
    unconfirmed: list[str] = field(default_factory=list)  # failed once, passed in the confirmation run: flaky
    unchecked: list[str] = field(default_factory=list)    # failed once, beyond the confirmation run's few tests
    not_run: list[str] = field(default_factory=list)     # stopped at the time cap
    claims: list[str] = field(default_factory=list)
    selected: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    error: str = ""
    messages: dict[str, str] = field(default_factory=dict)  # failure message per killing test (shortened)


PREFLIGHT = "HAMI-E2E-000"


def passed_tests(run: RunResult) -> set[str]:
    return {test for test, outcome in run.tests.items() if outcome.status == "PASS"}


def judge(mutant: Mutant, run: RunResult, baseline: RunResult) -> Verdict:
    """Killed by the tests that pass on the baseline and fail on the mutant twice (run and confirmation); baseline
    passes that failed once and were not run again are listed as unchecked.

    In the confirmation run HAMi is already installed, so the preflight (HAMI-E2E-000) checks what HAMi registered
    and may fail first, naming the mutant's effect, and every later test skips: a suspect skipped that way counts as
    failed again when the preflight passes on the baseline."""
    failed = sorted(test for test, outcome in run.tests.items() if outcome.status == "FAIL")
    baseline_passed = passed_tests(baseline)
    suspects = [test for test in failed if test in baseline_passed]
    preflight = run.confirmation.get(PREFLIGHT)
    preflight_caught = PREFLIGHT in baseline_passed and preflight is not None and preflight.status == "FAIL"

    def failed_again(test: str) -> bool:
        outcome = run.confirmation.get(test)
        return outcome is not None and (outcome.status == "FAIL" or (outcome.status == "SKIP" and preflight_caught))

    killed_by = [test for test in suspects if failed_again(test)]
    status = "error" if run.error else "killed" if killed_by else "survived"
    return Verdict(
        mutant=mutant.name, area=mutant.area, breaks=mutant.breaks, status=status, killed_by=killed_by,
        failed=failed, unconfirmed=[test for test in suspects if test in run.confirmation and test not in killed_by],
        unchecked=[test for test in suspects if test not in run.confirmation],
        not_run=sorted(t for t, o in run.tests.items() if o.status == "NOT RUN"),
        claims=list(mutant.claims), selected=len(run.tests), seconds=run.seconds, error=run.error,
        messages={test: " ".join(run.tests[test].message.split())[:300] for test in killed_by},
    )


def _minutes(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}m{secs:02d}s"


def _ids(ids: list[str]) -> str:
    return ", ".join(test.removeprefix("HAMI-E2E-") for test in ids) or "-"


def table(verdicts: list[Verdict], baseline: RunResult, wall_seconds: float) -> str:
    """The markdown table (test IDs shortened to their number: 202 is HAMI-E2E-202)."""
    passed = sum(1 for outcome in baseline.tests.values() if outcome.status == "PASS")
    killed = sum(1 for verdict in verdicts if verdict.status == "killed")
    judged = sum(1 for verdict in verdicts if verdict.status != "error")
    lines = [
        f"Baseline: {passed} of {len(baseline.tests)} selected tests pass"
        + (f" ({baseline.error})" if baseline.error else "") + f"; {_minutes(baseline.seconds.get('total', 0))}.",
        f"Mutants killed: {killed} of {judged}"
        + (f" ({len(verdicts) - judged} could not be run)" if judged != len(verdicts) else "")
        + f"; harness wall time {_minutes(wall_seconds)}.",
        "",
        "| mutant | area | what it breaks | failed tests | killed | killed by a claimed test | time |",
        "|---|---|---|---|---|---|---|",
    ]
    for verdict in verdicts:
        killed_text = {"killed": "yes", "survived": "**no**", "error": f"error: {verdict.error[:160]}"}[verdict.status]
        if verdict.unchecked:
            killed_text += f"; also failed once: {_ids(verdict.unchecked)}"
        if verdict.unconfirmed:
            killed_text += f" (failed once only, flaky: {_ids(verdict.unconfirmed)})"
        if verdict.not_run:
            killed_text += f" ({len(verdict.not_run)} not run: time cap)"
        claimed = sorted(set(verdict.claims) & set(verdict.killed_by))
        lines.append(f"| {verdict.mutant} | {verdict.area} | {verdict.breaks} | {_ids(verdict.failed)} | "
                     f"{killed_text} | {_ids(claimed) if verdict.claims else '(none claimed)'} | "
                     f"{_minutes(verdict.seconds.get('total', 0))} |")
    return "\n".join(lines) + "\n"


def write(folder: Path, verdicts: list[Verdict], baseline: RunResult, wall_seconds: float,
          meta: dict[str, object]) -> str:
    """``table.md`` and ``results.json`` in ``folder``; returns the table."""
    text = table(verdicts, baseline, wall_seconds)
    (folder / "table.md").write_text(f"# Mutation run {folder.name}\n\n{text}")
    document = {
        **meta,
        "wall_seconds": round(wall_seconds, 1),
        "baseline": {"error": baseline.error, "seconds": baseline.seconds,
                     "tests": {test: outcome.status for test, outcome in sorted(baseline.tests.items())}},
        "mutants": [asdict(verdict) for verdict in verdicts],
    }
    (folder / "results.json").write_text(json.dumps(document, indent=2) + "\n")
    return text
