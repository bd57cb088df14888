"""Base class of the keyword components."""

from __future__ import annotations

from .context import Context


class LibraryComponent:
    """A group of keywords for one area; every component of a library shares one `Context`."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
