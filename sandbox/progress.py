"""Progress lines for long steps, so a user sees the sandbox is alive."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager


def say(message: str) -> None:
    print(f"[sandbox] {message}", file=sys.stderr, flush=True)


def elapsed(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{seconds:.1f}s"


@contextmanager
def step(what: str, heartbeat: float = 30.0) -> Iterator[None]:
    """Announce a step, repeat a still-running line every ``heartbeat`` seconds, report its duration."""
    start = time.monotonic()
    done = threading.Event()

    def tick() -> None:
        while not done.wait(heartbeat):
            say(f"  ... still {what} ({elapsed(time.monotonic() - start)})")

    say(f"{what} ...")
    ticker = threading.Thread(target=tick, daemon=True)
    ticker.start()
    try:
        yield
    finally:
        done.set()
    say(f"{what}: done in {elapsed(time.monotonic() - start)}")
