"""The images the sandbox's nodes can run: a catalog from image references to folders built on this machine.

There is no container runtime and no registry. An "image" is a folder laid out like the real image (HAMi's
``/k8s-vgpu/bin/...``, kube-scheduler's ``/usr/local/bin/kube-scheduler``) plus its environment; or a *builtin*, a
contract of a small image played by the agent itself (the webhook certificate generator: its module is not on the
Go module proxy). The catalog lives in ``<run dir>/images.json``; ``python -m sandbox up`` and ``hami install`` write
it, like ``kind load docker-image`` would. A pod whose image matches a catalog *repository* but not a built *tag*
gets the kubelet's ``ErrImagePull`` with the list of tags that are there.

kwok must leave these pods alone: ``kwok/stages.yaml`` skips pods with an image of ``RUNNABLE_REPOSITORIES``.
"""

from __future__ import annotations

import fnmatch
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

# The root of every container HAMi allocated (built by node_images.gpu_container_image).
GPU_CONTAINER = "hami-e2e/gpu-container:latest"
# Keep in sync with the image regex in kwok/stages.yaml (a test checks it).
RUNNABLE_REPOSITORIES = ("projecthami/hami", "kube-scheduler", "kube-webhook-certgen")


@dataclass(frozen=True)
class Image:
    """One runnable image: patterns of references it answers to, and a folder or a builtin handler."""

    refs: tuple[str, ...]
    root: str = ""
    env: dict[str, str] = field(default_factory=dict)
    builtin: str = ""
    description: str = ""

    def matches(self, reference: str) -> bool:
        normal = normalize(reference)
        return any(fnmatch.fnmatchcase(normal, pattern) for pattern in self.refs)

    def to_json(self) -> dict:
        return {"refs": list(self.refs), "root": self.root, "env": self.env, "builtin": self.builtin,
                "description": self.description}


def normalize(reference: str) -> str:
    """``docker.io/library/x:1`` -> ``x:1``; a reference without a tag gets ``:latest``."""
    ref = reference.split("@", 1)[0]
    for prefix in ("docker.io/", "index.docker.io/"):
        if ref.startswith(prefix):
            ref = ref[len(prefix):]
    if ref.startswith("library/"):
        ref = ref[len("library/"):]
    last = ref.rsplit("/", 1)[-1]
    return ref if ":" in last else ref + ":latest"


def repository(reference: str) -> str:
    return normalize(reference).rsplit(":", 1)[0]


def is_runnable_repository(reference: str) -> bool:
    repo = repository(reference)
    return any(repo == name or repo.endswith("/" + name) for name in RUNNABLE_REPOSITORIES)


class Catalog:
    """Reads and writes ``images.json``; re-reads it when the file changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._images: list[Image] = []
        self._mtime = -1.0

    def images(self) -> list[Image]:
        try:
            mtime = os.stat(self.path).st_mtime
        except FileNotFoundError:
            return []
        if mtime != self._mtime:
            data = json.loads(self.path.read_text())
            self._images = [Image(refs=tuple(item["refs"]), root=item.get("root", ""), env=item.get("env", {}),
                                  builtin=item.get("builtin", ""), description=item.get("description", ""))
                            for item in data.get("images", [])]
            self._mtime = mtime
        return self._images

    def find(self, reference: str) -> Image | None:
        return next((image for image in self.images() if image.matches(reference)), None)

    def add(self, image: Image) -> None:
        """Add or replace (same reference patterns) an image, atomically."""
        images = [item for item in self.images() if item.refs != image.refs] + [image]
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"images": [item.to_json() for item in images]}, indent=2))
        tmp.replace(self.path)

    def tags_of(self, reference: str) -> list[str]:
        """The built tags of the reference's repository (for an ErrImagePull message)."""
        repo = repository(reference)
        tags = []
        for image in self.images():
            for pattern in image.refs:
                name, _, tag = pattern.rpartition(":")
                if fnmatch.fnmatchcase(repo, name):
                    tags.append(tag)
        return sorted(set(tags))
