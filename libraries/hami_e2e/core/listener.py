"""Listener (API v3) registered by the HamiLibrary facade: scoped cleanup, cleanup of an aborted run, and
diagnostics after failed tests."""

from __future__ import annotations

import atexit
import signal
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from robot.api import logger

from .context import Context


class HamiListener:
    """Keeps the context's suite/test state current and cleans up by scope, even when a teardown is missing.

    * ``start_suite`` / ``end_suite``: tracks the running suite; at its end undoes what was tracked with scope
      ``suite`` in it, and at the end of the top suite what was tracked with scope ``run``.
    * ``start_test``: resets per-test state (namespace, last pod, tags).
    * ``end_test``: for a failed test whose diagnostics were not collected yet (no `Collect Diagnostics On
      Failure` in its teardown), collects them; messages logged here stay in log.html under the test (RF 7.2+).
      Then undoes the test's cleanups (keep-on-failure aware).
    * When the top suite starts, the run takes its lock (`RunLock`: later runs leave its objects alone while it
      runs) and registers an exit hook. Ctrl-C or SIGTERM once makes Robot Framework stop gracefully: teardowns,
      the listener's cleanups and the end of the top suite run as usual. A second one ends the run with
      SystemExit; the exit hook then undoes whatever is still tracked (a third Ctrl-C leaves it to the next run's
      preflight, which finds it by the run's labels).
    """

    ROBOT_LISTENER_API_VERSION = 3

    def __init__(self, ctx: Context, collect_diagnostics: Callable[[], None]) -> None:
        self.ctx = ctx
        self.collect_diagnostics = collect_diagnostics
        self._started = False

    def start_suite(self, data: Any, result: Any) -> None:
        if not self._started:
            self._started = True
            self.ctx.claim_run()
            atexit.register(self.finish_aborted_run)
        self.ctx.suite_stack.append(data.full_name)
        self.ctx.suite_name = data.full_name
        self.ctx.suite_started[data.full_name] = datetime.now(timezone.utc)

    def end_suite(self, data: Any, result: Any) -> None:
        for error in self.ctx.run_cleanups(f"suite:{data.full_name}"):
            logger.warn(f"Suite cleanup failed: {error}")
        if self.ctx.suite_stack and self.ctx.suite_stack[-1] == data.full_name:
            self.ctx.suite_stack.pop()
        self.ctx.suite_name = self.ctx.suite_stack[-1] if self.ctx.suite_stack else None
        if data.parent is None:
            self.close()

    def start_test(self, data: Any, result: Any) -> None:
        self.ctx.reset_test_state(data.name, [str(t) for t in data.tags])

    def end_test(self, data: Any, result: Any) -> None:
        failed = result.status == "FAIL"
        if failed and not self.ctx.diagnostics_collected and self.ctx.namespace:
            try:
                self.collect_diagnostics()
            except Exception as error:  # noqa: BLE001 - a listener must never break the run
                logger.warn(f"Collecting diagnostics failed: {error}")
        self.ctx.finish_test(failed)

    def close(self) -> None:
        for error in self.ctx.run_cleanups("run"):
            logger.warn(f"End-of-run cleanup failed: {error}")

    def finish_aborted_run(self) -> None:
        """Exit hook: undoes what is still tracked when the run ended early (a second Ctrl-C or SIGTERM), then
        gives up the run lock. A further Ctrl-C or SIGTERM stops the cleanup and leaves the rest to the next run."""
        pending = [c.description for c in self.ctx.cleanups]
        if pending:
            _say(
                f"The run {self.ctx.run_id} stopped before its cleanup: undoing {len(pending)} thing(s) it created "
                f"({', '.join(reversed(pending))}). Ctrl-C to leave them to the next run's preflight."
            )
            previous = signal.signal(signal.SIGTERM, _interrupt)
            try:
                errors = self.ctx.run_all_cleanups()
                _say("Cleanup done." if not errors else "Cleanup failed for: " + "; ".join(errors))
            except KeyboardInterrupt:
                left = ", ".join(c.description for c in self.ctx.cleanups)
                _say(f"Cleanup abandoned; the next run's preflight removes what is left: {left}.")
            finally:
                signal.signal(signal.SIGTERM, previous)
        self.ctx.release_run()


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _say(text: str) -> None:
    stream = sys.__stderr__
    if stream is not None:
        stream.write(f"[ hami-e2e ] {text}\n")
        stream.flush()
