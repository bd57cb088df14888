"""Enter a container and exec its command: ``python3 -I enter.py <spec.json>``.

Run by the node agent for every container process (and exec'd probe or hook). Self-contained on purpose (standard
library only, no package imports) so it starts fast with ``-I``. Steps, all in this single-threaded process:

1. join the pod's network namespace (``/proc/<holder>/ns/net``) unless the pod uses the host network;
2. unshare a private mount namespace and a UTS namespace (hostname = pod name, as in Kubernetes);
3. build the container's root on a tmpfs: ``/proc`` and ``/sys``, a minimal ``/dev``, private ``/tmp`` and ``/run``;
   unless the spec asks for a ``minimal`` root, the host's ``/usr`` folders (``host_usr``, default all) and ``/etc``
   entries read-only as the image's base; then the image folder's files; then the volumes at their mount paths;
4. for a container given real GPUs (``gpu`` in the spec, GPU-node mode: ``host_driver.py``), isolate them as the
   NVIDIA container runtime does: ``/dev`` mounted ``nodev`` holding only the given device nodes (bound from the
   host), ``/proc/driver/nvidia/gpus`` reduced to the given GPUs' PCI entries, ``nvidia-modprobe`` masked and
   CAP_MKNOD dropped from the bounding set, so that not even root in it can re-create a hidden GPU's node;
5. chroot into it, switch user if the pod asks, and exec the command with the container's environment.

Nothing here changes the host: every mount happens in the private mount namespace and disappears with it.
A command that is not in the container answers exit 127, as a shell in a container without that binary would.
"""

from __future__ import annotations

import ctypes
import json
import os
import socket
import sys

CLONE_NEWNET = 0x40000000
CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
PR_CAPBSET_DROP = 24
CAP_MKNOD = 27

HOST_USR_DIRS = ("bin", "lib", "lib64", "libexec", "sbin", "share")
MERGED_USR_LINKS = {"bin": "usr/bin", "lib": "usr/lib", "lib64": "usr/lib64", "sbin": "usr/sbin"}
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
ETC_SKIPPED = ("ld.so.preload", "hostname", "mtab")

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    def enc(value: str | None) -> bytes | None:
        return value.encode() if value is not None else None

    _check(_libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)),
           f"mount {source or fstype} on {target}")


def _bind(source: str, target: str, readonly: bool, noexec: bool = False) -> None:
    if os.path.isdir(source):
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if not os.path.exists(target):
            open(target, "a").close()
    _mount(source, target, None, MS_BIND | MS_REC)
    flags = (MS_RDONLY if readonly else 0) | (MS_NOEXEC | MS_NOSUID | MS_NODEV if noexec else 0)
    if flags:
        try:
            _mount(None, target, None, MS_REMOUNT | MS_BIND | flags)
        except OSError:
            if noexec:
                raise   # a folder that must not run programs never stays executable
            # a read-only remount is refused for some special mounts; they stay as the host has them


def _overlay_image(image_root: str, root: str, relative: str = "") -> None:
    """Bind the image's files into the root: a path missing from the root is bound whole, else descend."""
    source_dir = os.path.join(image_root, relative)
    for name in sorted(os.listdir(source_dir)):
        rel = os.path.join(relative, name)
        source, target = os.path.join(image_root, rel), os.path.join(root, rel)
        if os.path.islink(target):
            raise OSError(0, f"image path /{rel} meets a symbolic link of the container's root")
        if os.path.islink(source):
            if not os.path.lexists(target):
                os.symlink(os.readlink(source), target)
        elif os.path.isdir(source) and os.path.isdir(target) and not os.path.islink(target):
            if os.path.ismount(target):
                raise OSError(0, f"image path /{rel} would hide the host folder bound there; move it in the image")
            _overlay_image(image_root, root, rel)
        elif not os.path.lexists(target) or os.path.isfile(target):
            _bind(source, target, readonly=True)


def _build_root(spec: dict) -> str:
    root = spec["rootfs"]
    _mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=755")
    _base_dirs(root, spec.get("gpu"))
    if not spec.get("minimal"):
        _host_system(root, spec.get("host_usr", HOST_USR_DIRS))
    if spec.get("image_root"):
        _overlay_image(spec["image_root"], root)
    for item in sorted(spec.get("mounts", []), key=lambda m: m["target"].count("/")):
        _bind(item["source"], _inside(root, item["target"]), readonly=item.get("readonly", False),
              noexec=item.get("noexec", False))
    if spec.get("gpu") is not None:
        _isolate_gpus(root, spec["gpu"])
    return root


def _isolate_gpus(root: str, gpu: dict) -> None:
    """Only the given GPUs in ``/proc/driver/nvidia/gpus`` (``proc_gpus``: their PCI names; None keeps all),
    ``nvidia-modprobe`` masked (``mask``: container paths), CAP_MKNOD gone from the bounding set."""
    proc_gpus = os.path.join(root, "proc", "driver", "nvidia", "gpus")
    if gpu.get("proc_gpus") is not None and os.path.isdir(proc_gpus):
        staging = os.path.join(root, "run", ".gpus")
        os.makedirs(staging)
        _mount("/proc/driver/nvidia/gpus", staging, None, MS_BIND | MS_REC)
        _mount("tmpfs", proc_gpus, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=555")
        for pci in gpu["proc_gpus"]:
            os.makedirs(os.path.join(proc_gpus, pci))
            _mount(os.path.join(staging, pci), os.path.join(proc_gpus, pci), None, MS_BIND | MS_REC)
        _check(_libc.umount2(staging.encode(), ctypes.c_int(2)), f"detaching {staging}")   # MNT_DETACH
        os.rmdir(staging)
    for path in gpu.get("mask", []):
        target = _inside(root, path)
        if os.path.isfile(target):
            _mount("/dev/null", target, None, MS_BIND)
    if not gpu.get("drop_mknod", True):
        return
    ulong = ctypes.c_ulong
    _check(_libc.prctl(PR_CAPBSET_DROP, ulong(CAP_MKNOD), ulong(0), ulong(0), ulong(0)),
           "dropping CAP_MKNOD from the bounding set")


def _base_dirs(root: str, gpu: dict | None = None) -> None:
    """What every root has: /proc and /sys of this kernel, a minimal /dev, private /tmp and /run."""
    _bind("/proc", os.path.join(root, "proc"), readonly=False)
    _bind("/sys", os.path.join(root, "sys"), readonly=True)
    dev = os.path.join(root, "dev")
    os.makedirs(dev)
    _mount("tmpfs", dev, "tmpfs", MS_NOSUID | (MS_NODEV if gpu is not None else 0), "mode=755")
    for name in DEVICES:
        if os.path.exists(f"/dev/{name}"):
            _bind(f"/dev/{name}", os.path.join(dev, name), readonly=False)
    for node in (gpu or {}).get("devices", []):
        if os.path.exists(node):
            _bind(node, os.path.join(dev, os.path.basename(node)), readonly=False)
    os.makedirs(os.path.join(dev, "shm"))
    _mount("tmpfs", os.path.join(dev, "shm"), "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                         ("stderr", "/proc/self/fd/2")):
        os.symlink(target, os.path.join(dev, name))
    for name, mode in (("tmp", "mode=1777"), ("run", "mode=755")):
        os.makedirs(os.path.join(root, name))
        _mount("tmpfs", os.path.join(root, name), "tmpfs", MS_NOSUID | MS_NODEV, mode)
    os.makedirs(os.path.join(root, "var"))
    os.symlink("/run", os.path.join(root, "var", "run"))
    os.makedirs(os.path.join(root, "root"), mode=0o700)


def _host_system(root: str, usr_dirs: list[str]) -> None:
    """The host's programs and libraries as the image's base: the chosen /usr folders read-only, and /etc entry by
    entry (so a container can get files of its own there, e.g. HAMi's /etc/ld.so.preload, without touching ours)."""
    usr = os.path.join(root, "usr")
    os.makedirs(os.path.join(usr, "local", "bin"))
    for name in usr_dirs:
        if os.path.isdir(f"/usr/{name}"):
            _bind(f"/usr/{name}", os.path.join(usr, name), readonly=True)
    for name, target in MERGED_USR_LINKS.items():
        os.symlink(target, os.path.join(root, name))
    etc = os.path.join(root, "etc")
    os.makedirs(etc)
    for name in sorted(os.listdir("/etc")):
        if name in ETC_SKIPPED:
            continue
        source = os.path.join("/etc", name)
        if os.path.islink(source):
            os.symlink(os.readlink(source), os.path.join(etc, name))
        elif os.path.isdir(source) or os.path.isfile(source):
            _bind(source, os.path.join(etc, name), readonly=True)


def _inside(root: str, path: str, depth: int = 0) -> str:
    """``path`` of the container resolved within ``root``: a symlink on the way (``/var/run`` -> ``/run``) is
    followed as the container would see it, never onto the host's own folders."""
    if depth > 16:
        raise OSError(0, f"too many symbolic links resolving {path} in the container")
    current = root
    parts = [p for p in path.split("/") if p and p != "."]
    for index, part in enumerate(parts):
        candidate = os.path.join(current, part)
        if os.path.islink(candidate):
            link = os.readlink(candidate)
            rest = "/".join(parts[index + 1:])
            base = link if link.startswith("/") else os.path.join(current[len(root):] or "/", link)
            return _inside(root, os.path.normpath(os.path.join(base, rest)), depth + 1)
        current = candidate if part != ".." else (os.path.dirname(current) if current != root else root)
    return current


def main(spec_path: str) -> None:
    with open(spec_path) as handle:
        spec = json.load(handle)
    if spec.get("netns"):
        fd = os.open(spec["netns"], os.O_RDONLY)
        _check(_libc.setns(fd, CLONE_NEWNET), "joining the pod's network namespace")
        os.close(fd)
    _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWUTS), "unshare mount and UTS namespaces")
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    if spec.get("hostname"):
        socket.sethostname(spec["hostname"][:63])
    root = _build_root(spec)
    os.chroot(root)
    os.chdir(spec.get("workdir") or "/")
    gid, uid = spec.get("gid"), spec.get("uid")
    if gid is not None and gid != 0:
        os.setgroups([])
        os.setgid(gid)
    if uid is not None and uid != 0:
        os.setuid(uid)
    argv, env = spec["argv"], spec["env"]
    program = _which(argv[0], env.get("PATH", ""))
    if program is None:
        print(f"exec: \"{argv[0]}\": executable file not found in $PATH", file=sys.stderr, flush=True)
        os._exit(127)
    try:
        os.execve(program, argv, env)
    except OSError as error:
        print(f"exec: \"{argv[0]}\": {error.strerror}", file=sys.stderr, flush=True)
        os._exit(126)


def _which(name: str, path: str) -> str | None:
    """PATH lookup inside the container's root (the host's Python library is not visible after chroot, so no
    ``os.execvpe``, which imports lazily)."""
    if "/" in name:
        return name if os.path.exists(name) else None
    for folder in path.split(":"):
        candidate = os.path.join(folder or ".", name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


if __name__ == "__main__":
    try:
        main(sys.argv[1])
    except OSError as failure:
        print(f"hami-e2e node agent: cannot start the container: {failure}", file=sys.stderr, flush=True)
        os._exit(128)
