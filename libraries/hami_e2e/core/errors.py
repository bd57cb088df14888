"""Failure types raised by the hami-e2e keywords."""


class HamiE2EFailure(AssertionError):
    """An expected-vs-actual failure; Robot Framework shows only the message, not the class name."""

    ROBOT_SUPPRESS_NAME = True


class HelmFailure(HamiE2EFailure):
    """A helm command failed; the message carries helm's stderr and ``helm status``."""
