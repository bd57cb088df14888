"""The result of an external command (helm, kubectl) or of a command run in a container, and running one."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass


@dataclass
class CommandResult:
    """What a command gave back: exit status, stdout and stderr kept apart, and ``error``, the reason when it
    could not run at all (the API server's status text for a container command that did not start)."""

    command: list[str]
    rc: int
    stdout: str
    stderr: str
    error: str = ""

    def __str__(self) -> str:
        return f"rc={self.rc}"


def run_command(command: list[str], timeout: float) -> CommandResult:
    """Run ``command`` without a shell and return its result; never raises for a non-zero exit status."""
    try:
        completed = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError as error:
        return CommandResult(command, 127, "", f"{command[0]}: not found ({error.strerror})")
    except subprocess.TimeoutExpired as error:
        out = error.stdout.decode() if isinstance(error.stdout, bytes) else (error.stdout or "")
        err = error.stderr.decode() if isinstance(error.stderr, bytes) else (error.stderr or "")
        return CommandResult(command, 124, out, f"{err}\n{command[0]}: timed out after {timeout:.0f} s".strip())
    return CommandResult(command, completed.returncode, completed.stdout, completed.stderr)
