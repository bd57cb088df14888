"""The keyword components of ``HamiLibrary``, one module per area."""
