"""The real ``nvidia-smi`` binary (driver 535) from Debian bookworm's non-free component, never installed.

apt runs with a private configuration in the cache (its own sources list with ``non-free``, lists and package
cache), so the system's apt sources are neither read nor changed: ``apt-get update`` fetches only that list, then
``apt-get download nvidia-smi=<pinned version>`` (apt checks the package against the signed archive) and
``dpkg -x`` unpacks it. The mirror is the one the machine's own sources use for Debian. The binary needs only
libc; it ``dlopen``\\ s ``libnvidia-ml.so.1`` (the mock NVML) at run time.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
from pathlib import Path

from ..errors import SandboxError
from . import buildcache

PACKAGE = "nvidia-smi"
VERSION = "535.261.03-1"
SUITE = "bookworm"
KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
DEFAULT_MIRROR = "http://deb.debian.org/debian"
SYSTEM_SOURCES = Path("/etc/apt")
BINARY_IN_PACKAGE = Path("usr/lib/nvidia/current/nvidia-smi")


def debian_mirror(apt_dir: Path = SYSTEM_SOURCES) -> str:
    """The Debian archive URI the machine's apt sources use (not the security archive), else deb.debian.org."""
    files = [apt_dir / "sources.list", *sorted((apt_dir / "sources.list.d").glob("*"))]
    for path in files:
        if not path.is_file() or not path.name.endswith((".list", ".sources")):
            continue
        for raw in path.read_text(errors="replace").splitlines():
            line = raw.split("#", 1)[0]
            for uri in re.findall(r"(?:https?|file)://\S+", line):
                if uri.rstrip("/").endswith("/debian"):
                    return uri.rstrip("/")
    return DEFAULT_MIRROR


def _apt_options(apt_dir: Path) -> list[str]:
    options = {
        "Dir::Etc::sourcelist": apt_dir / "sources.list",
        "Dir::Etc::sourceparts": apt_dir / "sources.list.d",
        "Dir::State::Lists": apt_dir / "lists",
        "Dir::Cache": apt_dir / "cache",
        "APT::Sandbox::User": pwd.getpwuid(os.geteuid()).pw_name,
    }
    return [argument for name, value in options.items() for argument in ("-o", f"{name}={value}")]


def _private_apt(work: Path) -> Path:
    if not KEYRING.is_file():
        raise SandboxError(f"{KEYRING} is missing: apt needs Debian's archive key to check the nvidia-smi package "
                           "(package debian-archive-keyring)")
    apt_dir = work / "apt"
    for sub in ("sources.list.d", "lists/partial", "cache/archives/partial"):
        (apt_dir / sub).mkdir(parents=True)
    (apt_dir / "sources.list").write_text(f"deb [signed-by={KEYRING}] {debian_mirror()} {SUITE} non-free\n")
    return apt_dir


def _missing_libraries(binary: Path) -> list[str]:
    out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if "not found" in line]


def _build(work: Path, log: Path) -> None:
    apt_dir = _private_apt(work)
    options = _apt_options(apt_dir)
    buildcache.run(["apt-get", *options, "update"], f"apt-get update (private list: {SUITE} non-free)", log)
    download = work / "download"
    download.mkdir()
    buildcache.run(["apt-get", *options, "download", f"{PACKAGE}={VERSION}"], f"apt-get download {PACKAGE}={VERSION}",
                   log, cwd=download)
    (deb,) = download.glob("*.deb")
    buildcache.run(["dpkg", "-x", str(deb), str(work / "root")], f"dpkg -x {deb.name}", log)
    (work / "bin").mkdir()
    shutil.copy2(work / "root" / BINARY_IN_PACKAGE, work / "bin" / "nvidia-smi")
    missing = _missing_libraries(work / "bin" / "nvidia-smi")
    if missing:
        raise SandboxError(f"nvidia-smi {VERSION} needs libraries this machine lacks: {', '.join(missing)}")
    for leftover in ("apt", "download", "root"):
        shutil.rmtree(work / leftover)


def ensure_nvidia_smi() -> Path:
    """Download (once) and return the ``nvidia-smi`` binary of Debian's package ``nvidia-smi`` ``VERSION``."""
    for tool in ("apt-get", "dpkg", "ldd"):
        buildcache.require_tool(tool, "fetch nvidia-smi from Debian's non-free archive")
    key = f"{VERSION}-{os.uname().machine}"
    target = buildcache.ensure("nvidia-smi", key, f"nvidia-smi {VERSION} (Debian {SUITE} non-free)", _build)
    return target / "bin" / "nvidia-smi"
