"""Mutant source trees: an extracted copy of the HAMi (and, for HAMi-core mutants, the HAMi-core) source with the
mutant's edits applied, kept in the cache (``<cache>/mutants/trees/``) so that a second harness run reuses the same
trees and therefore the same cached builds.

The unmutated sources are the ones the sandbox would build: ``HAMI_SOURCE`` (or the 2.10.0 release archive) and
``HAMI_CORE_SOURCE`` (or the archived HAMi-core commit). They are read, never written. Every HAMi tree carries a file
``HAMI_E2E_MUTANT`` naming its mutant (or ``baseline``), so its content hash, and with it its HAMi build folder, is the
harness's own: placing a mutant ``libvgpu.so`` into that folder can never touch a build someone else's sandbox uses.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from sandbox import config
from sandbox.gpu import buildcache
from sandbox.gpu import sources as gpu_sources
from sandbox.hami import source as hami_source
from sandbox.hami.source import HamiSource

from .catalog import HAMI, HAMI_CORE, Edit, Mutant

MARKER = "HAMI_E2E_MUTANT"
BASELINE = "baseline"


class MutationError(Exception):
    """A mutant cannot be applied: the upstream text it edits moved, or a source is missing."""


@dataclass(frozen=True)
class BaseSources:
    """The unmutated sources: HAMi (resolved as the sandbox resolves it) and HAMi-core (archive or checkout)."""

    hami: HamiSource
    core: Path

    @staticmethod
    def resolve() -> BaseSources:
        try:
            return BaseSources(hami_source.resolve(), gpu_sources.hami_core_source())
        except Exception as error:  # SandboxError and its friends: one sentence for the user
            raise MutationError(f"cannot find the unmutated source: {error}") from error

    def describe(self) -> str:
        return f"HAMi {self.hami.version} from {self.hami.description}; HAMi-core from {self.core}"


@dataclass(frozen=True)
class Trees:
    """What one run builds: a HAMi tree, and the HAMi-core source (a mutated tree, or the unmutated source)."""

    label: str
    hami: Path
    core: Path


def trees_dir() -> Path:
    return config.cache_dir() / "mutants" / "trees"


def _checked_text(root: Path, name: str, edit: Edit) -> str:
    """The file's text; ``MutationError`` unless the edit's text occurs in it exactly once."""
    path = root / edit.path
    text = path.read_text() if path.is_file() else ""
    count = text.count(edit.find)
    if count != 1:
        where = f"holds the text to replace {count} times" if path.is_file() else "does not exist"
        raise MutationError(f"mutant {name}: {edit.path} {where}, expected the text exactly once: {edit.find!r}. "
                            "The upstream source moved; update the mutant in tools/mutants/catalog.py")
    return text


def apply_edits(root: Path, name: str, edits: tuple[Edit, ...]) -> None:
    """Apply each edit in place; raise ``MutationError`` unless its text occurs exactly once in its file."""
    for edit in edits:
        text = _checked_text(root, name, edit)
        (root / edit.path).write_text(text.replace(edit.find, edit.replace))


def _key(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:12]


def _edits_text(edits: tuple[Edit, ...]) -> str:
    return "\0".join(f"{e.path}\0{e.find}\0{e.replace}" for e in edits)


def _extract_hami(base: HamiSource, dest: Path) -> None:
    """The HAMi tree (the folder holding go.mod) copied or extracted into ``dest``."""
    if base.kind == "directory":
        shutil.copytree(base.path, dest, symlinks=True, ignore=shutil.ignore_patterns(".git", "_output"))
        return
    prefix = f"{base.archive_prefix}/" if base.archive_prefix else ""
    with tarfile.open(base.path, "r:gz") as archive:
        members = []
        for member in archive.getmembers():
            name = member.name.removeprefix("./")
            if not name.startswith(prefix) or name == prefix.rstrip("/"):
                continue
            member.name = name[len(prefix):]
            members.append(member)
        archive.extractall(dest, members=members, filter="data")


def _materialise(label: str, key: str, fill: Callable[[Path], None]) -> Path:
    """``<trees>/<label>-<key>/``, made by ``fill(tmp)`` in a temporary sibling and renamed into place once."""
    target = trees_dir() / f"{label}-{key}"
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{label}-", dir=target.parent))
    try:
        fill(work / "tree")
        os.replace(work / "tree", target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def hami_tree(base: BaseSources, label: str, edits: tuple[Edit, ...] = ()) -> Path:
    """A HAMi tree marked ``label`` with ``edits`` applied (cached by base content, label and edits)."""
    def fill(dest: Path) -> None:
        _extract_hami(base.hami, dest)
        apply_edits(dest, label, edits)
        (dest / MARKER).write_text(f"hami-e2e mutation harness: {label}\n")
    return _materialise(f"hami-{label}", _key(base.hami.content_hash, label, _edits_text(edits)), fill)


def core_tree(base: BaseSources, label: str, edits: tuple[Edit, ...]) -> Path:
    """A HAMi-core tree with ``edits`` applied (what ``HAMI_CORE_SOURCE`` then names)."""
    def fill(dest: Path) -> None:
        work = dest.parent / "unpack"
        work.mkdir()
        root = gpu_sources.unpack(base.core, work)
        os.replace(root, dest)
        apply_edits(dest, label, edits)
    return _materialise(f"core-{label}", _key(buildcache.digest(base.core), label, _edits_text(edits)), fill)


def for_run(base: BaseSources, mutant: Mutant | None) -> Trees:
    """The trees of the baseline (``mutant`` None) or of one mutant. A HAMi-core mutant gets an unmutated HAMi
    tree marked with its name, so its ``libvgpu.so`` is placed into a HAMi build folder of its own."""
    if mutant is None:
        return Trees(BASELINE, hami_tree(base, BASELINE), base.core)
    if mutant.component == HAMI:
        return Trees(mutant.name, hami_tree(base, mutant.name, mutant.edits), base.core)
    if mutant.component == HAMI_CORE:
        return Trees(mutant.name, hami_tree(base, mutant.name), core_tree(base, mutant.name, mutant.edits))
    raise MutationError(f"mutant {mutant.name}: unknown component {mutant.component!r}")


def check_applies(base: BaseSources, mutants: list[Mutant]) -> None:
    """Fail before anything runs when a mutant's text is not found exactly once in the unmutated source."""
    with tempfile.TemporaryDirectory(prefix="mutant-check-") as scratch:
        hami_root: Path | None = None
        core_root: Path | None = None
        for mutant in mutants:
            for edit in mutant.edits:
                if mutant.component == HAMI:
                    if hami_root is None:
                        hami_root = Path(scratch) / "hami"
                        _extract_hami(base.hami, hami_root)
                    root = hami_root
                else:
                    if core_root is None:
                        (Path(scratch) / "core").mkdir()
                        core_root = gpu_sources.unpack(base.core, Path(scratch) / "core")
                    root = core_root
                _checked_text(root, mutant.name, edit)


def snapshot_suite(dest: Path, worktree: bool = False) -> str:
    """Copy this repository's suite (suites, resources, libraries, variables, the sandbox, everything git knows)
    into ``dest`` and return what was copied: the committed HEAD by default, since other engineers may be editing
    the working tree while the harness runs for an hour; with ``worktree`` the working tree's tracked and
    unignored files as they are now (your own uncommitted changes)."""
    def git(*args: str) -> bytes:
        return subprocess.run(["git", "-C", str(config.REPO_DIR), *args], capture_output=True, check=True).stdout
    try:
        commit = git("rev-parse", "--short=12", "HEAD").decode().strip()
        if not worktree:
            with tarfile.open(fileobj=io.BytesIO(git("archive", "--format=tar", "HEAD"))) as archive:
                archive.extractall(dest, filter="data")
            return commit
        for name in filter(None, git("ls-files", "-z", "--cached", "--others", "--exclude-standard").split(b"\0")):
            source = config.REPO_DIR / name.decode()
            if source.is_file():
                (dest / name.decode()).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, dest / name.decode())
        return f"{commit} + working tree"
    except (OSError, subprocess.CalledProcessError) as error:
        raise MutationError(f"cannot copy the suite from {config.REPO_DIR} with git: {error}") from error
