"""The one error type the sandbox CLI reports: a sentence naming the cause and where to look."""


class SandboxError(RuntimeError):
    """A failure with a clear cause; the CLI prints it and exits non-zero, without a traceback."""
