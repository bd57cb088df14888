"""What the sandbox's nodes can run, loaded into the node agent's image catalog (``<run>/images.json``).

- kube-scheduler: the sandbox's own build of the server version, in an image folder laid out like the upstream image
  (``/usr/local/bin/kube-scheduler``); HAMi's chart runs it in the scheduler pod with the server's version as tag.
- the webhook certificate generator (any tag): a builtin of the agent (``agent/certgen.py``).
- HAMi: one image folder per HAMi build (``sandbox/hami``), answering to ``projecthami/hami:<VERSION>``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from . import config
from .agent.images import GPU_CONTAINER, Catalog, Image, normalize


def catalog(run_dir: Path) -> Catalog:
    return Catalog(run_dir / "images.json")


def link_or_copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        target.unlink()
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def kube_scheduler_image(bin_dir: Path, version: str) -> Image:
    """An image folder holding the sandbox's kube-scheduler binary (hard-linked from the build cache)."""
    root = config.cache_dir() / "images" / f"kube-scheduler-{bin_dir.name}"
    binary = root / "usr" / "local" / "bin" / "kube-scheduler"
    if not binary.exists():
        link_or_copy(bin_dir / "kube-scheduler", binary)
    return Image(refs=(f"*kube-scheduler:{version}", f"kube-scheduler:{version}"), root=str(root),
                 description=f"kube-scheduler {version} built by the sandbox")


def certgen_image() -> Image:
    return Image(refs=("*kube-webhook-certgen:*", "kube-webhook-certgen:*"), builtin="certgen",
                 description="kube-webhook-certgen create/patch, played by the node agent")


# What a CUDA image gives a shell user, plus what the NVIDIA runtime injects (nvidia-smi) and our CUDA workload.
# Nothing else runs in a GPU container: another program is not found (exit 127), as in an image without it.
GPU_CONTAINER_TOOLS = ("sh", "bash", "cat", "env", "ls", "echo", "true", "false", "id", "grep", "head", "tail",
                       "wc", "sleep", "ps", "kill", "test", "printf", "sort", "cut", "tr", "sed", "awk", "xargs",
                       "date", "uname", "stat", "mkdir", "rm", "touch", "timeout", "nproc")


def gpu_container_image(nvidia_smi: Path, workload: Path) -> Image:
    """The root every HAMi-allocated GPU container runs in: the host's shell tools (``/usr/bin``, hard-linked),
    ``nvidia-smi`` (Debian's 535, as the NVIDIA runtime would inject the driver's) and ``gpu-workload`` (ours: CUDA
    driver API allocations). The pod's own image cannot run here; its command and exec'd commands use these."""
    digest = hashlib.sha256(f"{nvidia_smi}:{workload}:{GPU_CONTAINER_TOOLS}".encode()).hexdigest()[:12]
    root = config.cache_dir() / "images" / f"gpu-container-{digest}"
    bin_dir = root / "usr" / "bin"
    stamp = root.parent / f"{root.name}.complete"
    if not stamp.exists():
        for name in GPU_CONTAINER_TOOLS:
            source = shutil.which(name, path="/usr/bin:/bin")
            if source:
                link_or_copy(Path(source).resolve(), bin_dir / name)
        link_or_copy(nvidia_smi, bin_dir / "nvidia-smi")
        link_or_copy(workload, bin_dir / "gpu-workload")
        stamp.touch()
    return Image(refs=(GPU_CONTAINER,), root=str(root),
                 env={"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
                 description="GPU container: shell tools, nvidia-smi 535, gpu-workload")


def hami_image(image_root: Path, refs: list[str], env: dict[str, str], description: str) -> Image:
    """HAMi's image folder, answering to its references from any registry (``<mirror>/projecthami/hami:<tag>``)."""
    normal = [normalize(ref) for ref in refs]
    patterns = tuple(dict.fromkeys(p for ref in normal for p in (ref, "*/" + ref)))
    return Image(refs=patterns, root=str(image_root), env=env, description=description)
