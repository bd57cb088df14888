"""Keyword components of the hami-e2e library; the facade is ``libraries/HamiLibrary.py``."""
