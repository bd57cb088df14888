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
