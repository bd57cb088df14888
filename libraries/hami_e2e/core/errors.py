"""Failure types raised by the hami-e2e keywords."""


class HamiE2EFailure(AssertionError):
    """An expected-vs-actual failure; Robot Framework shows only the message, not the class name."""

    ROBOT_SUPPRESS_NAME = True


class HelmFailure(HamiE2EFailure):
    """A helm command failed; the message carries helm's stderr and ``helm status``."""


def failure(text: str, message: str | None = None) -> HamiE2EFailure:
    """The failure an assertion raises: ``message`` (the keyword's ``message=`` argument) replaces the generated
    ``text``, which names the object, the expected and the actual value."""
    return HamiE2EFailure(message or text)


def is_stop_signal(error: BaseException) -> bool:
    """Whether ``error`` is Robot Framework's graceful stop: the ``ExecutionFailed`` (with ``exit``) that the first
    SIGINT or SIGTERM raises in the running keyword. Code that retries on any exception must let it through."""
    return type(error).__name__ == "ExecutionFailed" and bool(getattr(error, "exit", False))
