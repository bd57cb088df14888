"""The GPU twin's pack: what a lent GPU machine lacks, under the 64 MiB a device call carries; and the archive step.

    .venv/bin/python -m tools.gpu_twin_pack pack [--out .gpu-twin] [--tree head|worktree]
    .venv/bin/python -m tools.gpu_twin_pack archive RESULTS_DIR [--release NAME]

``pack`` writes ``<out>/pack.tar.xz`` (``xz -9``) and ``<out>/pack.json`` (what is inside, sizes). Inside:

- ``prebuilt/`` for ``HAMI_E2E_PREBUILT`` (``sandbox/prebuilt.py``): the kube multi-call binary under its six names
  and HAMi's multi-call binary in a copy of the sandbox's HAMi build folder (its image files and chart), hard links
  (tar keeps each binary once), helm;
- ``cache/``: files laid out as in the sandbox's cache: the exec helper (``hami-e2e-exec``, static) and kwok's CRDs;
- ``site/``: the suite's and the sandbox's Python packages installed for CPython 3.12 on manylinux x86-64 (pip
  ``--target`` from the pinned wheels, downloaded into ``<cache>/gpu-twin/wheels-cp312``); unpacked files compress
  far better in one xz stream than the wheels' zips;
- ``third_party/``: HAMi-core's source archive and the CUDA headers the GPU host tier builds it with;
- ``tree/``: the suite as committed (``git archive HEAD``; ``--tree worktree`` takes the working tree's tracked and
  untracked files instead), so a run on the device is of a known revision even while the working tree changes.

``tools/gpu-twin/run-on-device.sh`` unpacks it on the device and runs ``tools/gpu_twin_device.py``. ``archive``
files what came back (``results.tar.xz`` unpacked into RESULTS_DIR) into ``results/<release>/<UTC timestamp>/``
like any run, one folder per robot pass, with the target named in the report's metadata.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from sandbox import config, control_plane
from sandbox import tools as sandbox_tools
from sandbox.agent.kubectl_exec import ensure_dispatcher
from sandbox.errors import SandboxError
from sandbox.hami.build import ensure_build
from tools import archive
from tools.gpu_twin_multicall import HAMI_NAMES, KUBE_NAMES, build_hami, build_kube

REPO = config.REPO_DIR
DEFAULT_OUT = REPO / ".gpu-twin"
LIMIT = 64 << 20
PYTHON_VERSION = "3.12"
PLATFORMS = ("manylinux_2_34_x86_64", "manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64", "manylinux_2_5_x86_64", "manylinux1_x86_64")
# The sandbox's and the suite's imports (requirements.txt's runtime part) with every dependency, pinned as the
# project's .venv has them; the device's own Python (PyTorch's) keeps its packages, these come first on its path.
WHEELS = ("robotframework==7.5", "robotframework-pythonlibcore==4.6.0", "robotframework-requests==0.9.7",
          "robotframework-kubelibrary==0.8.11", "kubernetes==37.0.2", "PyYAML==6.0.3",
          "cryptography==50.0.2", "cffi==2.1.1", "pycparser==3.12", "certifi==2026.10.19.post1",
          "charset-normalizer==3.5.3", "durationpy==0.11", "google-auth==2.63.0", "idna==3.20", "oauthlib==4.0.1",
          "pyasn1==0.6.5", "pyasn1_modules==0.4.2", "python-dateutil==4.0.0", "requests==2.34.2",
          "requests-oauthlib==2.0.0", "urllib3==2.8.0", "websocket-client==1.9.2", "pydantic==2.14.4",
          "pydantic_core==2.50.5", "annotated-types==0.8.0", "typing_extensions==4.16.0",
          "typing-inspection==0.4.5", "tzdata==2026.6")


def _pip(*args: str) -> None:
    result = subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise SandboxError(f"pip {args[0]} failed: {(result.stderr or result.stdout).strip()[-600:]}")


def _site(into: Path) -> None:
    """The Python packages for CPython 3.12 (module docstring), installed with pip --target."""
    wheels = config.cache_dir() / "gpu-twin" / "wheels-cp312"
    wheels.mkdir(parents=True, exist_ok=True)
    platforms = [arg for platform in PLATFORMS for arg in ("--platform", platform)]
    target = ["--only-binary=:all:", "--python-version", PYTHON_VERSION, "--implementation", "cp", *platforms]
    _pip("download", "--quiet", "--no-deps", *target, "--dest", str(wheels), *WHEELS)
    _pip("install", "--quiet", "--no-deps", "--no-index", "--no-compile", "--find-links", str(wheels), *target,
         "--target", str(into), *WHEELS)


def _tree(into: Path, which: str) -> str:
    """The suite's files: HEAD's (``git archive``) or the working tree's; returns the revision."""
    revision = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    into.mkdir(parents=True)
    if which == "head":
        data = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", "HEAD"], capture_output=True,
                              check=True).stdout
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            tar.extractall(into, filter="data")
        return revision
    listed = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            (into / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, into / name)
    return revision + "+worktree"


def _hami_build(into: Path, multicall: Path) -> dict:
    """A copy of the sandbox's HAMi build folder whose programs are hard links of the multi-call binary."""
    build = ensure_build()
    target = into / build.root.name
    bin_dir = target / "image" / "k8s-vgpu" / "bin"
    programs = {build.root / path.relative_to(target) for path in (bin_dir / name for name in HAMI_NAMES)}
    shutil.copytree(build.root, target, symlinks=True, ignore=lambda folder, names: [
        n for n in names if Path(folder) / n in programs or n.startswith("libvgpu")])
    shutil.copy2(multicall, bin_dir / "hami-e2e-multicall")
    for name in HAMI_NAMES:
        (bin_dir / name).hardlink_to(bin_dir / "hami-e2e-multicall")
    (bin_dir / "hami-e2e-multicall").unlink()   # the names stay, one inode
    info = json.loads((target / "build.json").read_text())
    info["multicall"] = str(multicall)
    (target / "build.json").write_text(json.dumps(info, indent=2) + "\n")
    return {"hami_version": build.version, "hami_build": build.root.name}


def _third_party(into: Path) -> None:
    into.mkdir(parents=True)
    archives = sorted(config.third_party_dir().glob("HAMi-core-*.tar.gz"))
    if not archives:
        raise SandboxError(f"no HAMi-core archive in {config.third_party_dir()}")
    shutil.copy2(archives[0], into / archives[0].name)
    headers = REPO / "third_party" / "cuda-headers"
    if headers.is_dir():
        shutil.copytree(headers, into / "cuda-headers")


def pack(out: Path, tree: str) -> dict:
    started = time.monotonic()
    kube = build_kube()
    hami, _ = build_hami()
    pins = config.pins()
    with tempfile.TemporaryDirectory(prefix="gpu-twin-pack-") as tmp:
        stage = Path(tmp)
        prebuilt = stage / "prebuilt"
        (prebuilt / "kube").mkdir(parents=True)
        shutil.copy2(kube, prebuilt / "kube" / KUBE_NAMES[0])
        for name in KUBE_NAMES[1:]:
            (prebuilt / "kube" / name).hardlink_to(prebuilt / "kube" / KUBE_NAMES[0])
        manifest = {"kubernetes": pins.kubernetes, **_hami_build(prebuilt / "hami", hami)}
        (prebuilt / "tools").mkdir()
        shutil.copy2(sandbox_tools.ensure_tools().helm, prebuilt / "tools" / "helm")
        (prebuilt / "prebuilt.json").write_text(json.dumps(manifest, indent=1))
        cache = stage / "cache"
        dispatcher = ensure_dispatcher()
        relative = dispatcher.relative_to(config.cache_dir())
        (cache / relative).parent.mkdir(parents=True)
        shutil.copy2(dispatcher, cache / relative)
        crds = Path("gomod") / "sigs.k8s.io" / f"kwok@{pins.kwok}" / "kustomize" / "crd" / "bases"
        (cache / crds).mkdir(parents=True)
        for crd in control_plane.KWOK_CRDS:
            shutil.copy2(config.cache_dir() / crds / f"kwok.x-k8s.io_{crd}.yaml", cache / crds)
        _site(stage / "site")
        _third_party(stage / "third_party")
        revision = _tree(stage / "tree", tree)
        (stage / "tree" / "REVISION").write_text(revision + "\n")
        out.mkdir(parents=True, exist_ok=True)
        target = out / "pack.tar.xz"
        with target.open("wb") as handle:
            tar = subprocess.Popen(["tar", "-C", str(stage), "-cf", "-", "."], stdout=subprocess.PIPE)
            xz = subprocess.run(["xz", "-9", "-T2", "-c"], stdin=tar.stdout, stdout=handle)
            if tar.wait() != 0 or xz.returncode != 0:
                raise SandboxError("tar | xz of the pack failed")
        sizes = {path.name: sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
                 for path in stage.iterdir()}
    info = {"revision": revision, "tree": tree, "kubernetes": pins.kubernetes, **manifest,
            "bytes": target.stat().st_size, "unpacked_bytes": sizes, "seconds": round(time.monotonic() - started, 1)}
    (out / "pack.json").write_text(json.dumps(info, indent=1) + "\n")
    _exclude(out)
    return info


def _exclude(out: Path) -> None:
    """Keep the pack out of git (it travels with the device call as a carried, ignored path)."""
    try:
        relative = out.resolve().relative_to(REPO)
    except ValueError:
        return
    exclude = REPO / ".git" / "info" / "exclude"
    line = f"/{relative.as_posix()}/"
    if exclude.exists() and line in exclude.read_text().splitlines():
        return
    with exclude.open("a") as handle:
        handle.write(f"\n# the GPU twin's pack (tools/gpu_twin_pack.py)\n{line}\n")


def archive_results(results: Path, release: str | None, root: Path) -> list[Path]:
    """File each robot pass of a device run (``<results>/<pass>/output.xml``) as its own archived run."""
    summary = json.loads((results / "summary.json").read_text())
    release = release or summary.get("release") or "gpu-twin"
    archived = []
    for name, passed in summary.get("passes", {}).items():
        output = results / name / "output.xml"
        if not output.is_file():
            continue
        run_dir = archive.new_run_dir(root, release if name == "gpu" else f"{release}-{name}")
        target = summary["target"] + ("" if name == "gpu" else f"; {passed.get('what', name)}")
        subprocess.run([sys.executable, "-m", "robot.rebot", "--outputdir", str(run_dir), "--output", "output.xml",
                        "--log", "log.html", "--report", "report.html", "--metadata", f"Target:{target}",
                        "--metadata", f"Device:{summary.get('device', '?')}",
                        "--metadata", f"Suite revision:{summary.get('revision') or 'unknown'}",
                        str(output)], check=False, capture_output=True)
        archive.write_run_record(run_dir, {"release": run_dir.parent.name, "timestamp": run_dir.name,
                                           "started": passed.get("started"), "finished": passed.get("finished"),
                                           "runner": "robot on a lent GPU machine (tools/gpu-twin/run-on-device.sh)",
                                           "robot_argv": passed.get("argv", []), "rc": passed.get("rc"),
                                           "suite_commit": summary.get("revision", ""), "reruns": []})
        archived.append(run_dir)
    return archived


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.gpu_twin_pack", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    pack_cmd = commands.add_parser("pack", help="build the pack for a device call")
    pack_cmd.add_argument("--out", type=Path, default=DEFAULT_OUT)
    pack_cmd.add_argument("--tree", choices=("head", "worktree"), default="head")
    archive_cmd = commands.add_parser("archive", help="archive a device run's results like any run")
    archive_cmd.add_argument("results", type=Path)
    archive_cmd.add_argument("--release")
    archive_cmd.add_argument("--root", type=Path, default=REPO / "results")
    args = parser.parse_args()
    try:
        if args.command == "pack":
            info = pack(args.out, args.tree)
            print(json.dumps(info, indent=1))
            if info["bytes"] > LIMIT - (4 << 20):
                print(f"WARNING: the pack is {info['bytes'] >> 20} MiB; with the working tree a call carries 64 MiB")
        else:
            for run_dir in archive_results(args.results, args.release, args.root):
                print(run_dir)

    except SandboxError as error:
        print(f"gpu-twin pack error: {error}")
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
