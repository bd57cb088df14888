"""Mutation harness: named, exact source edits of HAMi and HAMi-core, each run against the suite on a sandbox of its
own (``python -m tools.mutants``; see ``__main__`` for the options and ``catalog`` for the mutants)."""
