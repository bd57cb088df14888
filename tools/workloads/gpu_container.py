#!/usr/bin/env python3
"""Run a command as a container given some GPUs would run it, without a container runtime (root needed).

    gpu_container.py --gpu GPU-3f5c...   -- nvidia-smi        # a UUID, as nvidia-smi -L prints it
    gpu_container.py --gpu 1 --gpu 0     -- python3 job.py    # or an NVML index (PCI bus order)

On a host with several GPUs, ``CUDA_VISIBLE_DEVICES`` is no stand-in for a container: NVML (nvidia-smi, and
HAMi-core, which maps its limits by NVML index) still sees every GPU. A container given GPU k sees only GPU k, as
its device 0. This script builds that view the way the NVIDIA container runtime does, in a private mount namespace:

* ``/dev`` is a fresh tmpfs mounted ``nodev`` holding only ``null``, ``zero``, ``full``, ``random``, ``urandom``,
  ``tty``, ``pts``, ``shm``, ``mqueue``, the usual ``fd``/``std*`` links, ``nvidiactl``, ``nvidia-uvm``,
  ``nvidia-uvm-tools`` and the given GPUs' ``/dev/nvidia<minor>``, each bind-mounted from the real ``/dev``;
* ``/proc/driver/nvidia/gpus`` shows only the given GPUs' PCI entries;
* ``nvidia-modprobe`` is masked (``/dev/null`` bound over it) and ``CAP_MKNOD`` is dropped from the bounding set,
  so that the driver libraries, running as root, cannot re-create the hidden device nodes.

Then it execs the command: its exit code and output are the command's. Nothing is printed unless ``--verbose``;
errors of the set-up go to stderr with exit code 125. Everything it mounts vanishes with the namespace.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

# Linux constants (<sched.h>, <sys/mount.h>, <linux/prctl.h>, <linux/capability.h>).
CLONE_NEWNS = 0x00020000
MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x2, 0x4, 0x8
MS_BIND, MS_REC, MS_PRIVATE = 0x1000, 0x4000, 0x40000
MNT_DETACH = 0x2
PR_CAPBSET_DROP = 24
CAP_MKNOD = 27

EXIT_SETUP_FAILED = 125
#: Device nodes every container gets (the OCI default set), then the NVIDIA control nodes.
BASIC_NODES = ("null", "zero", "full", "random", "urandom", "tty")
BASIC_DIRS = ("pts", "shm", "mqueue")
NVIDIA_CONTROL_NODES = ("nvidiactl", "nvidia-uvm", "nvidia-uvm-tools")
LINKS = {"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2",
         "ptmx": "pts/ptmx"}
MODPROBE_PATHS = ("/usr/bin/nvidia-modprobe", "/usr/sbin/nvidia-modprobe", "/usr/local/bin/nvidia-modprobe",
                  "/usr/local/nvidia/bin/nvidia-modprobe", "/bin/nvidia-modprobe", "/sbin/nvidia-modprobe")


class SetupError(Exception):
    """The container view could not be built; the message says which step failed."""


@dataclass(frozen=True)
class Gpu:
    """One GPU as ``/proc/driver/nvidia/gpus/<pci>/information`` describes it."""

    index: int  # NVML index: position in PCI bus order
    pci: str  # directory name, e.g. 0000:00:06.0
    minor: int  # /dev/nvidia<minor>
    uuid: str


def host_gpus(proc_gpus: Path) -> list[Gpu]:
    """Every GPU the driver lists, in NVML order (PCI bus order), with its minor number and UUID."""
    if not proc_gpus.is_dir():
        raise SetupError(f"{proc_gpus} does not exist: no NVIDIA driver is loaded on this host")
    gpus = []
    for index, entry in enumerate(sorted(p for p in proc_gpus.iterdir() if p.is_dir())):
        fields = {}
        for line in (entry / "information").read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            fields[key.strip()] = value.strip()
        if not fields.get("Device Minor", "").isdigit():
            raise SetupError(f"{entry}/information has no 'Device Minor' number")
        gpus.append(Gpu(index, entry.name, int(fields["Device Minor"]), fields.get("GPU UUID", "")))
    return gpus


def choose(gpus: list[Gpu], wanted: list[str]) -> list[Gpu]:
    """The GPUs named in ``wanted`` (UUIDs or NVML indexes), in the order given."""
    chosen = []
    for name in wanted:
        match = [g for g in gpus if name == g.uuid or (name.isdigit() and int(name) == g.index)]
        if not match:
            listed = ", ".join(f"{g.index}={g.uuid or '?'} ({g.pci})" for g in gpus)
            raise SetupError(f"no GPU {name!r} on this host; it has {listed or 'none'}")
        chosen.append(match[0])
    return chosen


class _Libc:
    def __init__(self) -> None:
        self.lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        self.lib.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
        self.lib.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
        self.lib.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]

    def _check(self, result: int, what: str) -> None:
        if result != 0:
            error = ctypes.get_errno()
            raise SetupError(f"{what} failed: {os.strerror(error)} (errno {error})")

    def unshare_mounts(self) -> None:
        self._check(self.lib.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")

    def mount(self, source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
        enc = [None if v is None else os.fsencode(v) for v in (source, target, fstype, data)]
        self._check(self.lib.mount(enc[0], enc[1], enc[2], flags, enc[3]), f"mount {source} on {target}")

    def bind(self, source: str, target: str, recursive: bool = False) -> None:
        self.mount(source, target, None, MS_BIND | (MS_REC if recursive else 0))

    def detach(self, target: str) -> None:
        self._check(self.lib.umount2(os.fsencode(target), MNT_DETACH), f"umount {target}")

    def drop_bounding_capability(self, capability: int) -> None:
        self._check(self.lib.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0), f"dropping capability {capability}")


def _bind_node(libc: _Libc, old_dev: Path, name: str) -> bool:
    source = old_dev / name
    if not source.exists():
        return False
    target = Path("/dev") / name
    target.touch()
    libc.bind(str(source), str(target))
    return True


def build_dev(libc: _Libc, host_dev: Path, gpus: list[Gpu], staging: Path) -> list[str]:
    """Replaces /dev by a nodev tmpfs with the basic nodes, the NVIDIA control nodes and the given GPUs' nodes."""
    old_dev = staging / "dev"
    old_dev.mkdir()
    libc.bind(str(host_dev), str(old_dev), recursive=True)
    libc.mount("tmpfs", "/dev", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=755,size=65536k")
    present = [name for name in BASIC_NODES if _bind_node(libc, old_dev, name)]
    for name in BASIC_DIRS:
        if (old_dev / name).is_dir():
            (Path("/dev") / name).mkdir()
            libc.bind(str(old_dev / name), f"/dev/{name}", recursive=True)
            present.append(name)
    for name, target in LINKS.items():
        os.symlink(target, f"/dev/{name}")
    for name in NVIDIA_CONTROL_NODES + tuple(f"nvidia{g.minor}" for g in gpus):
        if _bind_node(libc, old_dev, name):
            present.append(name)
    libc.detach(str(old_dev))
    return present


def reduce_proc_gpus(libc: _Libc, proc_gpus: Path, gpus: list[Gpu], staging: Path) -> None:
    """Leaves only the given GPUs' entries in /proc/driver/nvidia/gpus."""
    old = staging / "gpus"
    old.mkdir()
    libc.bind(str(proc_gpus), str(old), recursive=True)
    libc.mount("tmpfs", str(proc_gpus), "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=555")
    for gpu in gpus:
        (proc_gpus / gpu.pci).mkdir()
        libc.bind(str(old / gpu.pci), str(proc_gpus / gpu.pci), recursive=True)
    libc.detach(str(old))


def mask_modprobe(libc: _Libc) -> list[str]:
    """Binds /dev/null over every nvidia-modprobe found, so nothing can load modules or create nodes."""
    found = {str(Path(p).resolve()) for p in (*MODPROBE_PATHS, shutil.which("nvidia-modprobe") or "") if p}
    masked = []
    for path in sorted(p for p in found if Path(p).is_file()):
        libc.bind("/dev/null", path)
        masked.append(path)
    return masked


def ensure_uvm_node(host_dev: Path) -> None:
    """Creates /dev/nvidia-uvm on the host if the driver has not yet (as the NVIDIA runtime does before start)."""
    if (host_dev / "nvidia-uvm").exists():
        return
    modprobe = shutil.which("nvidia-modprobe")
    if modprobe:
        subprocess.run([modprobe, "-u", "-c", "0"], check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _remove_empty_dirs(staging: Path) -> None:
    """Removes the staging folders; never recursively, as one may still hold a bind mount of the real /dev."""
    for folder in (staging / "dev", staging / "gpus", staging):
        try:
            folder.rmdir()
        except OSError:
            pass


def isolate(wanted: list[str], proc_gpus: Path, host_dev: Path) -> str:
    """Builds the container view in a new mount namespace of this process; returns a one-line description."""
    if os.geteuid() != 0:
        raise SetupError("needs root (a private mount namespace and mounts over /dev)")
    gpus = choose(host_gpus(proc_gpus), wanted)
    if host_dev == Path("/dev"):
        ensure_uvm_node(host_dev)
    libc = _Libc()
    libc.unshare_mounts()
    libc.mount(None, "/", None, MS_REC | MS_PRIVATE)
    staging = Path(tempfile.mkdtemp(prefix="hami-e2e-container-"))
    try:
        nodes = build_dev(libc, host_dev, gpus, staging)
        reduce_proc_gpus(libc, proc_gpus, gpus, staging)
        masked = mask_modprobe(libc)
    finally:
        _remove_empty_dirs(staging)
    libc.drop_bounding_capability(CAP_MKNOD)
    shown = ", ".join(f"GPU {g.index} ({g.uuid or 'no UUID'}, {g.pci}, /dev/nvidia{g.minor})" for g in gpus)
    return f"container given {shown}; /dev holds {' '.join(nodes)}; masked: {' '.join(masked) or 'none'}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpu", action="append", required=True, help="UUID or NVML index; repeat for several")
    parser.add_argument("--verbose", action="store_true", help="describe the view on stderr before running")
    parser.add_argument("--proc-gpus", type=Path, default=Path("/proc/driver/nvidia/gpus"), help=argparse.SUPPRESS)
    parser.add_argument("--host-dev", type=Path, default=Path("/dev"), help=argparse.SUPPRESS)
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command and its arguments")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given (put it after --)")
    try:
        description = isolate(args.gpu, args.proc_gpus, args.host_dev)
    except (SetupError, OSError) as error:
        print(f"gpu_container: {error}", file=sys.stderr)
        return EXIT_SETUP_FAILED
    if args.verbose:
        print(f"gpu_container: {description}", file=sys.stderr, flush=True)
    try:
        os.execvp(command[0], command)
    except OSError as error:
        print(f"gpu_container: cannot run {command[0]}: {error.strerror}", file=sys.stderr)
        return EXIT_SETUP_FAILED


if __name__ == "__main__":
    sys.exit(main())
