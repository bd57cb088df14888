"""Where the third-party sources of the GPU simulation come from: unmodified archives, or a checkout the user names.

Archives are read from ``../shared/third_party/`` beside the repository (``HAMI_E2E_THIRD_PARTY`` moves it);
``HAMI_CORE_SOURCE`` names a HAMi-core checkout (or archive) to build instead of the archived commit. Nothing is
built in place: sources are extracted into a build directory of the cache.
"""

from __future__ import annotations

import os
import shutil
import tarfile
from pathlib import Path

from .. import config
from ..errors import SandboxError

MOCK_NVML_ARCHIVE = "k8s-test-infra-*.tar.gz"
HAMI_CORE_ARCHIVE = "HAMi-core-*.tar.gz"
HAMI_CORE_ENV = "HAMI_CORE_SOURCE"


def third_party_dir() -> Path:
    default = config.REPO_DIR.parent / "shared" / "third_party"
    return Path(os.environ.get("HAMI_E2E_THIRD_PARTY", default))


def archive(pattern: str) -> Path:
    """The one archive in the third-party directory matching ``pattern``."""
    matches = sorted(third_party_dir().glob(pattern))
    if len(matches) != 1:
        found = ", ".join(path.name for path in matches) or "none"
        raise SandboxError(f"expected exactly one {pattern} in {third_party_dir()} (found: {found}); set "
                           f"HAMI_E2E_THIRD_PARTY to the directory holding the third-party source archives")
    return matches[0]


def hami_core_source() -> Path:
    """The HAMi-core to build: ``HAMI_CORE_SOURCE`` (a checkout or an archive) or the archived commit."""
    named = os.environ.get(HAMI_CORE_ENV)
    if not named:
        return archive(HAMI_CORE_ARCHIVE)
    path = Path(named).expanduser()
    if not (path / "CMakeLists.txt").is_file() and not path.name.endswith((".tar.gz", ".tgz")):
        raise SandboxError(f"{HAMI_CORE_ENV}={named} is neither a HAMi-core checkout (no CMakeLists.txt) nor a "
                           ".tar.gz archive")
    return path


def unpack(source: Path, dest: Path) -> Path:
    """Copy a checkout or extract an archive (one top directory) into ``dest``; return the source root there."""
    if source.is_dir():
        root = dest / source.name
        shutil.copytree(source, root, ignore=shutil.ignore_patterns(".git", "build"))
        return root
    with tarfile.open(source) as tarball:
        tarball.extractall(dest, filter="data")
    tops = [path for path in dest.iterdir() if path.is_dir()]
    if len(tops) != 1:
        raise SandboxError(f"{source} should hold one top directory, it holds {len(tops)}")
    return tops[0]


def read_member(source: Path, relative: str) -> str:
    """One text file of a checkout or archive, e.g. ``src/cuda/hook.c``, without extracting the rest."""
    if source.is_dir():
        return (source / relative).read_text(errors="replace")
    with tarfile.open(source) as tarball:
        for member in tarball.getmembers():
            if member.isfile() and member.name.split("/", 1)[-1] == relative:
                return tarball.extractfile(member).read().decode(errors="replace")  # type: ignore[union-attr]
    raise SandboxError(f"{source} has no {relative}")
