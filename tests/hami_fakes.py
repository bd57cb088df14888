"""A tiny stand-in for a HAMi source tree: the files sandbox/hami reads (go.mod, VERSION, docker/, lib/, charts/hami)
and three Go programs that print the version variables HAMi's Makefile stamps, so the build runs in seconds."""

from __future__ import annotations

import subprocess
import tarfile
from pathlib import Path

VERSION = "v9.9.9"

_VERSION_GO = """package version

var (
	version   = "v0.0.0-master"
	revision  = "unknown"
	buildDate = "unknown"
)

func Print() string { return "version: " + version + "\\nrevision: " + revision + "\\nbuild date: " + buildDate }
"""

_INFO_GO = """package info

var version = "unknown"

func Version() string { return version }
"""

_MAIN_GO = """package main

import (
	"fmt"
	"os"

	"github.com/Project-HAMi/HAMi/pkg/{package}"
)

func main() {{
	if len(os.Args) > 1 && os.Args[1] == "version" {{
		fmt.Println("{name} " + {call})
		return
	}}
	fmt.Println("fake {name}")
}}
"""

_DOCKERFILE = """ARG BASE=ubuntu:22.04
FROM golang AS gobuild
ENV NOT_IN_FINAL=1
FROM $BASE
ENV NVIDIA_VISIBLE_DEVICES=all
ENV NVIDIA_DRIVER_CAPABILITIES compute,utility
ARG VERSION
LABEL version="$VERSION"
COPY --from=gobuild /k8s-vgpu/bin /k8s-vgpu/bin
COPY ./lib /k8s-vgpu/lib
COPY --from=nvbuild /libvgpu/build/libvgpu.so /k8s-vgpu/lib/nvidia/libvgpu.so."$VERSION"
COPY ./docker/vgpu-init.sh \\
     ./docker/entrypoint.sh /k8s-vgpu/bin/
ENV PATH="/k8s-vgpu/bin:${PATH}"
# a comment
ENTRYPOINT ["/bin/bash", "-c", "entrypoint.sh  $DEST_DIR"]
"""


def hami_tree(root: Path, version: str = VERSION, module: str = "github.com/Project-HAMi/HAMi") -> Path:
    """Write a minimal HAMi-shaped Go module at ``root``; returns ``root``."""
    files = {
        "go.mod": f"module {module}\n\ngo 1.22\n",
        "VERSION": version,
        "LICENSE": "fake license\n",
        "pkg/version/version.go": _VERSION_GO,
        "pkg/device-plugin/nvidiadevice/nvinternal/info/info.go": _INFO_GO,
        "cmd/scheduler/main.go": _MAIN_GO.format(package="version", name="scheduler", call="version.Print()"),
        "cmd/vGPUmonitor/main.go": _MAIN_GO.format(package="version", name="vGPUmonitor", call="version.Print()"),
        "cmd/device-plugin/nvidia/main.go": _MAIN_GO.format(
            package="device-plugin/nvidiadevice/nvinternal/info", name="plugin", call="info.Version()"),
        "docker/Dockerfile": _DOCKERFILE,
        "docker/entrypoint.sh": "#!/bin/bash\nexec \"$@\"\n",
        "docker/vgpu-init.sh": "#!/bin/sh\necho init \"$1\"\n",
        "lib/nvidia/ld.so.preload": "/usr/local/vgpu/libvgpu.so",
        "charts/hami/Chart.yaml": f"apiVersion: v2\nname: hami\nversion: {version.lstrip('v')}\n",
        ".gitignore": "bin/\n",
    }
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=True).stdout.strip()


def git_checkout(root: Path) -> str:
    """Make ``root`` a git repository with everything committed; returns the commit id."""
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-q", "-m", "fake HAMi")
    return git(root, "rev-parse", "HEAD")


def plain_tarball(tree: Path, archive: Path, prefix: str) -> Path:
    """A .tar.gz of ``tree`` under ``prefix/`` without git's pax commit header."""
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tree, arcname=prefix)
    return archive
