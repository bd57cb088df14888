"""sandbox/hami builds: a HAMi-shaped fake module (seconds, into a temporary cache folder; Go's caches are shared)
and the real release archives (minutes the first time, then reused from the cache)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import hami_fakes
from sandbox.errors import SandboxError
from sandbox.hami import build, source

from .conftest import REPO

RELEASES = {"2.10.0": "4707fb02c91c545bc7343ce26dba4c32919f9a3e", "2.9.0": "3a006c6ae2f077a2683df7805c43656c07f6dc15"}


def run(binary: Path, *args: str) -> str:
    result = subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=20)
    assert result.returncode == 0, f"{binary.name} {' '.join(args)} exited {result.returncode}: {result.stderr}"
    return result.stdout + result.stderr


# --- the fake module -------------------------------------------------------------------------------------------

def test_fake_source_builds_into_an_image_folder(tmp_path: Path):
    tree = hami_fakes.hami_tree(tmp_path / "tree")
    made = build.ensure_build(tree, cache=tmp_path / "cache")
    assert made.root.parent == tmp_path / "cache" and (made.root / build.STAMP).exists()
    bin_dir = made.image_dir / "k8s-vgpu" / "bin"
    assert made.bin_dir == bin_dir
    assert sorted(p.name for p in bin_dir.iterdir()) == ["entrypoint.sh", "nvidia-device-plugin", "scheduler",
                                                          "vGPUmonitor", "vgpu-init.sh"]
    assert all(os.access(p, os.X_OK) for p in bin_dir.iterdir())
    assert "version: v9.9.9\nrevision: unknown" in run(made.binary("scheduler"), "version")
    assert "plugin v9.9.9" in run(made.binary("nvidia-device-plugin"), "version")
    assert (made.image_dir / "k8s-vgpu/lib/nvidia/ld.so.preload").read_text() == "/usr/local/vgpu/libvgpu.so"
    assert (made.chart_dir / "Chart.yaml").read_text() == (tree / "charts/hami/Chart.yaml").read_text()
    assert made.image()["env"]["PATH"].startswith("/k8s-vgpu/bin:")
    assert made.info["not_in_image"] == ["/k8s-vgpu/lib/nvidia/libvgpu.so.v9.9.9"]
    assert {name: item["bytes"] > 0 for name, item in made.info["binaries"].items()} == {
        "scheduler": True, "nvidia-device-plugin": True, "vGPUmonitor": True}
    assert (made.info["source"], made.info["revision"], made.info["dirty"]) == (
        f"{tree} (not a git checkout)", "unknown", False)
    assert not list((tmp_path / "cache").glob(".building-*"))


def test_same_source_is_reused_and_a_one_line_change_rebuilds(tmp_path: Path):
    tree = hami_fakes.hami_tree(tmp_path / "tree")
    first = build.ensure_build(tree, cache=tmp_path / "cache")
    stamp = first.binary("scheduler").stat().st_mtime_ns
    again = build.ensure_build(tree, cache=tmp_path / "cache")
    assert again.root == first.root and again.binary("scheduler").stat().st_mtime_ns == stamp
    main_go = tree / "cmd/scheduler/main.go"
    main_go.write_text(main_go.read_text().replace("fake scheduler", "changed scheduler"))
    changed = build.ensure_build(tree, cache=tmp_path / "cache")
    assert changed.root != first.root
    assert run(changed.binary("scheduler")).strip() == "changed scheduler"
    assert run(first.binary("scheduler")).strip() == "fake scheduler"


def test_dirty_checkout_is_stamped_dirty(tmp_path: Path):
    tree = hami_fakes.hami_tree(tmp_path / "tree")
    commit = hami_fakes.git_checkout(tree)
    (tree / "LICENSE").write_text("edited\n")
    made = build.ensure_build(tree, cache=tmp_path / "cache")
    assert f"revision: {commit}-dirty" in run(made.binary("vGPUmonitor"), "version")
    assert (made.info["revision"], made.info["dirty"]) == (commit, True)


def test_compile_error_names_the_log_and_leaves_nothing(tmp_path: Path):
    tree = hami_fakes.hami_tree(tmp_path / "tree")
    (tree / "cmd/scheduler/broken.go").write_text("package main\n\nfunc broken() { undefinedThing() }\n")
    with pytest.raises(SandboxError) as error:
        build.ensure_build(tree, cache=tmp_path / "cache")
    message = str(error.value)
    assert message.startswith("go build ./cmd/scheduler of HAMi v9.9.9 failed (exit 1); full log: ")
    log = Path(message.splitlines()[0].rsplit("full log: ", 1)[1])
    assert log.parent == tmp_path / "cache" / "logs" and "undefined: undefinedThing" in log.read_text()
    assert "undefined: undefinedThing" in message
    assert [p.name for p in (tmp_path / "cache").iterdir() if not p.name.startswith(".")] == ["logs"]
    assert not list((tmp_path / "cache").glob(".building-*"))


def test_version_variable_that_moved_is_caught(tmp_path: Path):
    tree = hami_fakes.hami_tree(tmp_path / "tree")
    version_go = tree / "pkg/version/version.go"
    version_go.write_text(version_go.read_text().replace("version   =", "release   =").replace("+ version +",
                                                                                              "+ release +"))
    with pytest.raises(SandboxError, match="scheduler version does not print v9.9.9: HAMi's version variables"):
        build.ensure_build(tree, cache=tmp_path / "cache")


# --- the real releases -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("release", sorted(RELEASES, reverse=True))
def test_release_archive_builds_and_runs(release: str, monkeypatch: pytest.MonkeyPatch):
    """Builds (first time: minutes) or reuses HAMi from ../shared/third_party/HAMi-<release>.tar.gz."""
    monkeypatch.delenv("HAMI_SOURCE", raising=False)
    archive = source.release_archive(release)
    if not archive.exists():
        pytest.skip(f"{archive} is not at hand: HAMi is built from that release archive (or a HAMI_SOURCE)")
    made = build.ensure_build(release)
    started = time.monotonic()
    assert "--http_bind" in run(made.binary("scheduler"), "--help")
    assert time.monotonic() - started < 5, "scheduler --help should answer at once"
    for program in ("scheduler", "vGPUmonitor"):
        printed = run(made.binary(program), "version")
        assert f"version:          v{release}" in printed and f"revision:         {RELEASES[release]}" in printed
    assert run(made.binary("nvidia-device-plugin"), "version").strip() == f"NVIDIA Device Plugin version: v{release}"
    assert made.image()["references"][0] == f"docker.io/projecthami/hami:v{release}"
    assert f"appVersion: \"{release}\"" in (made.chart_dir / "Chart.yaml").read_text()
    assert json.loads((made.root / "build.json").read_text())["source"] == (
        f"HAMi-{release}.tar.gz ({RELEASES[release][:8]}, release archive)")


def test_cli_prints_the_build_folder(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("HAMI_SOURCE", raising=False)
    archive = source.release_archive("2.10.0")
    if not archive.exists():
        pytest.skip(f"{archive} is not at hand")
    expected = build.ensure_build().root
    result = subprocess.run([sys.executable, "-m", "sandbox", "hami", "build"], cwd=REPO, capture_output=True,
                            text=True, timeout=3600)
    assert (result.returncode, result.stdout.strip()) == (0, str(expected)), result.stderr


def test_cli_without_a_source_says_what_to_provide(tmp_path: Path):
    env = {**os.environ, "HAMI_SOURCE": str(tmp_path / "absent")}
    result = subprocess.run([sys.executable, "-m", "sandbox", "hami", "build"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith(f"sandbox error: no HAMi source: {tmp_path / 'absent'} (named by HAMI_SOURCE=")
