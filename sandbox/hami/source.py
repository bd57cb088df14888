"""Which HAMi source the sandbox builds, and what identifies it.

A HAMi source is a checkout (any directory whose ``go.mod`` names ``github.com/Project-HAMi/HAMi``, or a directory
holding exactly one such folder, as an extracted archive does) or a ``.tar.gz`` of one. Chosen, first match wins, by
the ``source`` argument, ``HAMI_SOURCE``, or the release archive ``HAMi-2.10.0.tar.gz`` in the third-party folder
(``config.third_party_dir()``). A release number (``2.9.0`` or ``v2.9.0``) stands for ``HAMi-2.9.0.tar.gz`` there.

Identity: the content hash (sha256 of an archive file; of every file's path and content for a directory, leaving out
``.git`` and build outputs), the ``VERSION`` file, and the revision (the commit id ``git archive`` writes into its pax
header, or ``git rev-parse HEAD`` of a checkout plus whether its tree is dirty).
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

from .. import config
from ..errors import SandboxError

DEFAULT_RELEASE = "2.10.0"
MODULE = "github.com/Project-HAMi/HAMi"
UNKNOWN = "unknown"
_RELEASE = re.compile(r"v?(\d+\.\d+\.\d+(?:-[0-9A-Za-z.]+)?)")
_COMMIT = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_MODULE_LINE = re.compile(r"^module\s+(\S+)", re.MULTILINE)
# Build outputs and editor state a HAMi tree may hold (its .gitignore); never part of a directory's identity.
_SKIP_ANYWHERE = {".git", "__pycache__", ".idea", ".vscode"}
_SKIP_AT_TOP = {"bin", "_output", "output", "vendor"}
_SKIP_PATHS = {"libvgpu/build"}


@dataclass(frozen=True)
class HamiSource:
    """A resolved HAMi source: for a directory, ``path`` is the folder holding go.mod; for an archive, the file,
    with ``archive_prefix`` the folder inside it that holds go.mod (``""`` or e.g. ``"HAMi-2.10.0"``)."""

    path: Path
    kind: str  # "archive" or "directory"
    content_hash: str
    version: str
    revision: str
    dirty: bool
    description: str
    archive_prefix: str = ""

    @property
    def ldflags_revision(self) -> str:
        """What the build stamps as HAMi's revision: the commit id, ``-dirty`` appended for a modified checkout."""
        return f"{self.revision}-dirty" if self.dirty else self.revision


def release_archive(release: str) -> Path:
    """``2.9.0`` or ``v2.9.0`` -> ``<third_party>/HAMi-2.9.0.tar.gz`` (whether or not it exists)."""
    match = _RELEASE.fullmatch(release)
    if not match:
        raise SandboxError(f"{release!r} is not a HAMi release number like 2.9.0")
    return config.third_party_dir() / f"HAMi-{match.group(1)}.tar.gz"


def resolve(source: str | os.PathLike[str] | None = None) -> HamiSource:
    """The HAMi source to build: ``source``, else ``HAMI_SOURCE``, else the default release archive."""
    if source is not None and str(source):
        path, origin = _locate(str(source)), f"named as the source: {source}"
    elif os.environ.get("HAMI_SOURCE"):
        path, origin = _locate(os.environ["HAMI_SOURCE"]), f"named by HAMI_SOURCE={os.environ['HAMI_SOURCE']}"
    else:
        path, origin = release_archive(DEFAULT_RELEASE), "the default release archive"
    if not path.exists():
        raise SandboxError(_missing_message(path, origin))
    if path.is_dir():
        return _directory(path.resolve())
    if path.name.endswith((".tar.gz", ".tgz")):
        return _archive(path.resolve())
    raise SandboxError(f"{path} ({origin}) is neither a directory nor a .tar.gz: give a HAMi checkout or an "
                       "archive of one")


def _locate(text: str) -> Path:
    """A path as given, or a release number's archive when no such path exists."""
    path = Path(text).expanduser()
    if not path.exists() and _RELEASE.fullmatch(text):
        return release_archive(text)
    return path


def _missing_message(path: Path, origin: str) -> str:
    return (
        f"no HAMi source: {path} ({origin}) does not exist. Provide a HAMi checkout or a .tar.gz of one "
        f"with HAMI_SOURCE=<path> (or --source <path>), or put the release archive HAMi-{DEFAULT_RELEASE}.tar.gz "
        f"into {config.third_party_dir()} (HAMI_E2E_THIRD_PARTY names another folder). On the public internet "
        f"`go mod download -json {MODULE}@v0.0.0-<UTC commit time yyyymmddhhmmss>-<12-digit commit>` also yields "
        "the source (its Dir), but the Go module proxy reachable here refuses HAMi (403)."
    )


def _check_module(go_mod: str, where: Path) -> None:
    match = _MODULE_LINE.search(go_mod)
    if not match or match.group(1) != MODULE:
        named = match.group(1) if match else "no module"
        raise SandboxError(f"{where} is not a HAMi source: its go.mod names {named}, not {MODULE}")


def _version(text: str | None, where: Path) -> str:
    version = (text or "").strip()
    if not version:
        raise SandboxError(f"{where} has no VERSION file (HAMi keeps its release number there, e.g. v2.10.0)")
    return version


# --- archives --------------------------------------------------------------------------------------------------

def _archive(path: Path) -> HamiSource:
    try:
        with tarfile.open(path, "r:gz") as tar:
            # git archive's pax global header carries the commit id (what `git get-tar-commit-id` reads)
            commit = tar.pax_headers.get("comment", "")
            prefix, go_mod, version = _archive_top(tar, path)
    except (tarfile.TarError, OSError, EOFError) as error:
        raise SandboxError(f"cannot read the HAMi archive {path}: {error}") from error
    _check_module(go_mod, path)
    version = _version(version, path)
    revision = commit if _COMMIT.fullmatch(commit) else UNKNOWN
    release = path.name == f"HAMi-{version.lstrip('v')}.tar.gz"
    label = path.name if release else str(path)
    short = revision[:8] if revision != UNKNOWN else "no commit id"
    return HamiSource(
        path=path,
        kind="archive",
        content_hash=_file_sha256(path),
        version=version,
        revision=revision,
        dirty=False,
        description=f"{label} ({short}, {'release archive' if release else 'archive'})",
        archive_prefix=prefix,
    )


def _archive_top(tar: tarfile.TarFile, path: Path) -> tuple[str, str, str]:
    """(prefix, go.mod text, VERSION text) of the HAMi tree in the archive, at its top or in one top folder."""
    found: dict[str, dict[str, str]] = {}
    for member in tar:
        parts = member.name.strip("/").removeprefix("./").split("/")
        if member.isfile() and parts[-1] in ("go.mod", "VERSION") and len(parts) <= 2:
            prefix = parts[0] if len(parts) == 2 else ""
            handle = tar.extractfile(member)
            found.setdefault(prefix, {})[parts[-1]] = handle.read().decode(errors="replace") if handle else ""
            if len(found[prefix]) == 2:
                break
    candidates = [prefix for prefix, files in found.items() if "go.mod" in files]
    if "" in candidates:
        candidates = [""]
    if len(candidates) != 1:
        raise SandboxError(f"{path} is not a HAMi source archive: it has no single go.mod at its top or in one top "
                           "folder")
    prefix = candidates[0]
    return prefix, found[prefix]["go.mod"], found[prefix].get("VERSION", "")


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --- directories -----------------------------------------------------------------------------------------------

def _directory(path: Path) -> HamiSource:
    root = path if (path / "go.mod").is_file() else path / _single_subdir_with_go_mod(path)
    _check_module((root / "go.mod").read_text(errors="replace"), root)
    version_file = root / "VERSION"
    version = _version(version_file.read_text() if version_file.is_file() else None, root)
    git = _git_state(root)
    files = git[2] if git else _walk(root)
    if git:
        revision, dirty = git[0], git[1]
        description = f"{root} (git {revision[:7]}{', dirty' if dirty else ''})"
    else:
        revision, dirty, description = UNKNOWN, False, f"{root} (not a git checkout)"
    return HamiSource(
        path=root,
        kind="directory",
        content_hash=tree_hash(root, files),
        version=version,
        revision=revision,
        dirty=dirty,
        description=description,
    )


def _single_subdir_with_go_mod(path: Path) -> str:
    subdirs = [child.name for child in path.iterdir() if (child / "go.mod").is_file()]
    if len(subdirs) != 1:
        raise SandboxError(f"{path} is not a HAMi source: no go.mod in it or in exactly one folder below it")
    return subdirs[0]


def _git(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # safe.directory: only reading the identity of a tree the user named, whoever owns it
    return subprocess.run(["git", "-c", f"safe.directory={root}", "-C", str(root), *args],
                          capture_output=True, text=True)


def _git_state(root: Path) -> tuple[str, bool, list[str]] | None:
    """(HEAD, dirty, files that are tracked or untracked but not ignored) when ``root`` is a git checkout's top."""
    try:
        top = _git(root, "rev-parse", "--show-toplevel")
    except FileNotFoundError:  # no git on PATH: identify the tree by its files only
        return None
    if top.returncode != 0 or Path(top.stdout.strip()).resolve() != root.resolve():
        return None
    head = _git(root, "rev-parse", "HEAD")
    if head.returncode != 0:  # a repository without commits
        return None
    # Submodules (HAMi's libvgpu is HAMi-core) are not part of the Go build; their state is left out.
    status = _git(root, "status", "--porcelain", "--ignore-submodules=all")
    listed = _git(root, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
    files = sorted({name for name in listed.stdout.split("\0") if name})
    return head.stdout.strip(), bool(status.stdout.strip()), files


def _walk(root: Path) -> list[str]:
    files: list[str] = []
    for current, dirs, names in os.walk(root):
        relative = Path(current).relative_to(root)
        dirs[:] = [
            name for name in dirs
            if name not in _SKIP_ANYWHERE
            and not (relative == Path(".") and name in _SKIP_AT_TOP)
            and (relative / name).as_posix() not in _SKIP_PATHS
        ]
        files.extend((relative / name).as_posix() for name in names)
    return sorted(files)


def tree_hash(root: Path, files: list[str]) -> str:
    """sha256 over each listed file's relative path and content (a symlink: its target); missing ones are skipped."""
    digest = hashlib.sha256()
    for name in sorted(files):
        path = root / name
        if path.is_symlink():
            digest.update(b"L\0" + name.encode() + b"\0" + os.readlink(path).encode() + b"\0")
        elif path.is_file():
            digest.update(b"F\0" + name.encode() + b"\0" + bytes.fromhex(_file_sha256(path)))
    return digest.hexdigest()
