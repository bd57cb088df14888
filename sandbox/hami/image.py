"""HAMi's container image as a folder: what ``docker/Dockerfile`` puts under ``/k8s-vgpu`` and the image's settings.

The image's final stage copies the Go binaries to ``/k8s-vgpu/bin``, ``docker/entrypoint.sh`` and
``docker/vgpu-init.sh`` beside them, the source's ``lib/`` to ``/k8s-vgpu/lib`` (``lib/nvidia/ld.so.preload``) and
HAMi-core's ``libvgpu.so`` as ``/k8s-vgpu/lib/nvidia/libvgpu.so.<VERSION>``, and puts ``/k8s-vgpu/bin`` first on
PATH. The folder ``<build>/image/`` mirrors that tree; ``<build>/image.json`` records the final stage's ENV,
ENTRYPOINT, WORKDIR, LABELs and base image as read from the Dockerfile of the same source, and the image references
the chart's pods name. The base image's own settings (nvidia/cuda's) are not in the source and are not reproduced,
except Docker's default PATH under the Dockerfile's ``${PATH}``.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import tempfile
from pathlib import Path

from ..errors import SandboxError

IMAGE_DIR = "image"
IMAGE_JSON = "image.json"
APP_DIR = "k8s-vgpu"
REPOSITORY = "projecthami/hami"
REGISTRY = "docker.io"
DOCKER_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SCRIPTS = ("entrypoint.sh", "vgpu-init.sh")
_VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)")


def bin_dir(build_root: Path) -> Path:
    return build_root / IMAGE_DIR / APP_DIR / "bin"


def lib_dir(build_root: Path) -> Path:
    return build_root / IMAGE_DIR / APP_DIR / "lib" / "nvidia"


def libvgpu_name(version: str) -> str:
    """The file name HAMi's Dockerfile gives HAMi-core's library in the image."""
    return f"libvgpu.so.{version}"


def references(version: str) -> list[str]:
    """The image names this folder stands for (the chart renders the first; the short form is the same image)."""
    return [f"{REGISTRY}/{REPOSITORY}:{version}", f"{REPOSITORY}:{version}"]


def lay_out(source_root: Path, build_root: Path, version: str) -> dict:
    """Copy the source's image files (scripts, lib/, LICENSE) into ``build_root/image`` and write image.json;
    the binaries are built into ``bin_dir(build_root)`` separately. Returns the image description."""
    app = build_root / IMAGE_DIR / APP_DIR
    bin_dir(build_root).mkdir(parents=True, exist_ok=True)
    for script in SCRIPTS:
        origin = source_root / "docker" / script
        if not origin.is_file():
            raise SandboxError(f"{origin} is missing: HAMi's image needs it in /k8s-vgpu/bin")
        shutil.copyfile(origin, bin_dir(build_root) / script)
        (bin_dir(build_root) / script).chmod(0o755)
    if (source_root / "lib").is_dir():
        shutil.copytree(source_root / "lib", app / "lib", dirs_exist_ok=True, symlinks=True)
    lib_dir(build_root).mkdir(parents=True, exist_ok=True)
    if (source_root / "LICENSE").is_file():
        shutil.copyfile(source_root / "LICENSE", app / "LICENSE")
    description = describe(source_root / "docker" / "Dockerfile", version)
    (build_root / IMAGE_JSON).write_text(json.dumps(description, indent=2) + "\n")
    return description


def describe(dockerfile: Path, version: str) -> dict:
    """The settings of the Dockerfile's final stage, ``ARG VERSION`` set to ``version`` as HAMi's Makefile does."""
    if not dockerfile.is_file():
        raise SandboxError(f"{dockerfile} is missing: the image's settings are read from HAMi's Dockerfile")
    stage: list[tuple[str, str]] = []
    global_args: dict[str, str] = {}
    base = ""
    for instruction, argument in _instructions(dockerfile.read_text()):
        if instruction == "FROM":
            base, stage = _substitute(argument.split()[0], global_args), []
        elif instruction == "ARG" and not base:
            name, _, default = argument.partition("=")
            global_args[name.strip()] = default.strip().strip('"')
        else:
            stage.append((instruction, argument))
    args: dict[str, str] = {"VERSION": version}
    env: dict[str, str] = {"PATH": DOCKER_DEFAULT_PATH}
    labels: dict[str, str] = {}
    entrypoint: list[str] | str = []
    workdir = "/"
    files: list[str] = []
    for instruction, argument in stage:
        scope = {**args, **env}
        if instruction == "ARG":
            name, _, default = argument.partition("=")
            args.setdefault(name.strip(), _substitute(default, scope))
        elif instruction in ("ENV", "LABEL"):
            (env if instruction == "ENV" else labels).update(_pairs(argument, scope))
        elif instruction == "ENTRYPOINT":
            entrypoint = json.loads(argument) if argument.startswith("[") else argument
        elif instruction == "WORKDIR":
            workdir = _substitute(argument, scope)
        elif instruction in ("COPY", "ADD"):
            files.extend(_destinations(argument, scope))
    return {
        "references": references(version),
        "root": IMAGE_DIR,
        "base": base,
        "env": env,
        "entrypoint": entrypoint,
        "working_dir": workdir,
        "labels": labels,
        "libvgpu": f"/{APP_DIR}/lib/nvidia/{libvgpu_name(version)}",
        "files": files,
        "dockerfile": "docker/Dockerfile",
    }


def missing_files(build_root: Path) -> list[str]:
    """Paths the Dockerfile copies into the image that the folder lacks (HAMi-core's libvgpu.so until it is placed;
    HAMi 2.9.0's nvidia-mig-parted, which this build does not make)."""
    description = json.loads((build_root / IMAGE_JSON).read_text())
    root = build_root / IMAGE_DIR
    return [path for path in description["files"] if not (root / path.lstrip("/")).exists()]


def place_libvgpu(build_root: Path, libvgpu: Path) -> Path:
    """The hook for HAMi-core's build: put ``libvgpu`` into the image as ``lib/nvidia/libvgpu.so.<VERSION>``
    (atomically, replacing an older one) and return its path. The version is the build's, from image.json."""
    if not libvgpu.is_file():
        raise SandboxError(f"{libvgpu} is not a file: give the libvgpu.so that HAMi-core's build produced")
    description = json.loads((build_root / IMAGE_JSON).read_text())
    target = build_root / IMAGE_DIR / description["libvgpu"].lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=".libvgpu-", dir=target.parent)
    os.close(handle)
    shutil.copyfile(libvgpu, temporary)
    os.chmod(temporary, 0o755)
    os.replace(temporary, target)
    return target


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, argument) pairs, continuation lines joined, comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        instruction, _, argument = line.partition(" ")
        result.append((instruction.upper(), argument.strip()))
    return result


def _pairs(argument: str, scope: dict[str, str]) -> dict[str, str]:
    """``KEY=VALUE ...`` (or the legacy ``KEY VALUE``) with ``$VAR`` expanded; values see earlier pairs."""
    words = shlex.split(argument)
    if words and "=" not in words[0]:
        return {words[0]: _substitute(" ".join(words[1:]), scope)}
    result: dict[str, str] = {}
    for word in words:
        key, _, value = word.partition("=")
        result[key] = _substitute(value, {**scope, **result})
    return result


def _destinations(argument: str, scope: dict[str, str]) -> list[str]:
    """Where a COPY/ADD puts its sources (a destination ending in / receives each source by its base name)."""
    words = [word for word in shlex.split(argument) if not word.startswith("--")]
    sources, destination = words[:-1], _substitute(words[-1], scope)
    if not destination.endswith("/"):
        return [destination]
    return [destination + Path(_substitute(source, scope)).name for source in sources]


def _substitute(value: str, scope: dict[str, str]) -> str:
    return _VARIABLE.sub(lambda match: scope.get(match.group(1) or match.group(2), ""), value)
