"""sandbox/hami: which HAMi source is chosen, what identifies it, the build key and the image description."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest

import hami_fakes
from sandbox import config
from sandbox.errors import SandboxError
from sandbox.hami import build, image, source

RELEASES = {  # the shared archives' commits (../shared/third_party/README.md)
    "2.10.0": "4707fb02c91c545bc7343ce26dba4c32919f9a3e",
    "2.9.0": "3a006c6ae2f077a2683df7805c43656c07f6dc15",
}


@pytest.fixture
def third_party(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty third-party folder in place of ../shared/third_party, and no HAMI_SOURCE."""
    folder = tmp_path / "third_party"
    folder.mkdir()
    monkeypatch.setenv("HAMI_E2E_THIRD_PARTY", str(folder))
    monkeypatch.delenv("HAMI_SOURCE", raising=False)
    return folder


def git_archive(tree: Path, archive: Path, prefix: str) -> str:
    """``git archive`` of a fresh commit of ``tree``; returns the commit id."""
    commit = hami_fakes.git_checkout(tree)
    hami_fakes.git(tree, "archive", "--format=tar.gz", f"--prefix={prefix}/", "-o", str(archive), "HEAD")
    return commit


# --- choosing the source ---------------------------------------------------------------------------------------

def test_default_is_the_2_10_0_archive_in_third_party(third_party: Path):
    with pytest.raises(SandboxError) as error:
        source.resolve()
    message = str(error.value)
    assert f"{third_party}/HAMi-2.10.0.tar.gz (the default release archive) does not exist" in message
    assert "HAMI_SOURCE=<path>" in message and "HAMI_E2E_THIRD_PARTY" in message
    assert "go mod download -json github.com/Project-HAMi/HAMi@v0.0.0-" in message and "403" in message


def test_third_party_dir_is_shared_beside_the_checkout(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("HAMI_E2E_THIRD_PARTY", raising=False)
    assert config.third_party_dir() == config.REPO_DIR.parent / "shared" / "third_party"


def test_missing_hami_source_names_the_variable(third_party: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HAMI_SOURCE", "/nonexistent/hami")
    with pytest.raises(SandboxError, match=r"/nonexistent/hami \(named by HAMI_SOURCE=/nonexistent/hami\) does not"):
        source.resolve()


def test_release_number_stands_for_its_archive(third_party: Path, tmp_path: Path):
    tree = hami_fakes.hami_tree(tmp_path / "tree", version="v2.9.0")
    archive = third_party / "HAMi-2.9.0.tar.gz"
    git_archive(tree, archive, "HAMi-2.9.0")
    for name in ("2.9.0", "v2.9.0"):
        assert source.resolve(name).path == archive
    with pytest.raises(SandboxError, match="HAMi-2.8.0.tar.gz"):
        source.resolve("2.8.0")


def test_argument_wins_over_hami_source_which_wins_over_default(third_party: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch):
    first = hami_fakes.hami_tree(tmp_path / "first", version="v1.0.0")
    second = hami_fakes.hami_tree(tmp_path / "second", version="v2.0.0")
    monkeypatch.setenv("HAMI_SOURCE", str(second))
    assert source.resolve().version == "v2.0.0"
    assert source.resolve(first).version == "v1.0.0"


def test_a_module_that_is_not_hami_is_refused(third_party: Path, tmp_path: Path):
    tree = hami_fakes.hami_tree(tmp_path / "other", module="example.com/other")
    with pytest.raises(SandboxError, match="is not a HAMi source: its go.mod names example.com/other"):
        source.resolve(tree)


def test_a_file_that_is_no_archive_is_refused(third_party: Path, tmp_path: Path):
    (tmp_path / "hami.zip").write_text("zip")
    with pytest.raises(SandboxError, match="neither a directory nor a .tar.gz"):
        source.resolve(tmp_path / "hami.zip")


# --- archives --------------------------------------------------------------------------------------------------

def test_git_archive_identity(third_party: Path, tmp_path: Path):
    tree = hami_fakes.hami_tree(tmp_path / "tree", version="v2.9.0")
    archive = third_party / "HAMi-2.9.0.tar.gz"
    commit = git_archive(tree, archive, "HAMi-2.9.0")
    found = source.resolve(archive)
    assert (found.kind, found.version, found.revision, found.archive_prefix) == ("archive", "v2.9.0", commit,
                                                                                  "HAMi-2.9.0")
    assert found.content_hash == hashlib.sha256(archive.read_bytes()).hexdigest()
    assert found.description == f"HAMi-2.9.0.tar.gz ({commit[:8]}, release archive)"
    unzipped = subprocess.run(["gzip", "-dc", str(archive)], capture_output=True, check=True).stdout
    by_git = subprocess.run(["git", "get-tar-commit-id"], input=unzipped, capture_output=True).stdout
    assert by_git.decode().strip() == commit


def test_archive_without_commit_header_and_not_named_after_its_version(third_party: Path, tmp_path: Path):
    tree = hami_fakes.hami_tree(tmp_path / "tree", version="v2.10.0")
    archive = hami_fakes.plain_tarball(tree, tmp_path / "pr-1234.tar.gz", "HAMi")
    found = source.resolve(archive)
    assert (found.revision, found.archive_prefix) == ("unknown", "HAMi")
    assert found.description == f"{archive} (no commit id, archive)"


@pytest.mark.parametrize("release", sorted(RELEASES))
def test_shared_release_archives(release: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("HAMI_E2E_THIRD_PARTY", raising=False)
    archive = source.release_archive(release)
    if not archive.exists():
        pytest.skip(f"{archive} is not at hand")
    found = source.resolve(release)
    assert (found.version, found.revision) == (f"v{release}", RELEASES[release])
    sums = (archive.parent / "SHA256SUMS").read_text()
    assert f"{found.content_hash}  {archive.name}" in sums
    assert found.description == f"HAMi-{release}.tar.gz ({RELEASES[release][:8]}, release archive)"


# --- directories -----------------------------------------------------------------------------------------------

def test_directory_hash_is_stable_and_ignores_build_outputs(third_party: Path, tmp_path: Path):
    tree = hami_fakes.hami_tree(tmp_path / "a")
    found = source.resolve(tree)
    assert (found.kind, found.revision, found.dirty) == ("directory", "unknown", False)
    assert found.description == f"{tree} (not a git checkout)"
    copy = shutil.copytree(tree, tmp_path / "elsewhere" / "b")
    assert source.resolve(copy).content_hash == found.content_hash
    for output in ("bin/scheduler", "_output/x", ".git/HEAD", "libvgpu/build/libvgpu.so", "pkg/__pycache__/x"):
        (copy / output).parent.mkdir(parents=True, exist_ok=True)
        (copy / output).write_text("build output")
    assert source.resolve(copy).content_hash == found.content_hash
    (copy / "pkg/version/version.go").write_text((copy / "pkg/version/version.go").read_text() + "// one line\n")
    assert source.resolve(copy).content_hash != found.content_hash


def test_folder_holding_one_extracted_tree_is_accepted(third_party: Path, tmp_path: Path):
    tree = hami_fakes.hami_tree(tmp_path / "extracted" / "HAMi-2.10.0")
    assert source.resolve(tmp_path / "extracted").path == tree


def test_git_checkout_revision_and_dirty_flag(third_party: Path, tmp_path: Path):
    tree = hami_fakes.hami_tree(tmp_path / "checkout")
    commit = hami_fakes.git_checkout(tree)
    clean = source.resolve(tree)
    assert (clean.revision, clean.dirty, clean.ldflags_revision) == (commit, False, commit)
    assert clean.description == f"{tree} (git {commit[:7]})"
    (tree / "bin").mkdir()
    (tree / "bin" / "scheduler").write_text("ignored by .gitignore")
    assert source.resolve(tree) == clean
    (tree / "cmd/scheduler/main.go").write_text((tree / "cmd/scheduler/main.go").read_text() + "// edit\n")
    dirty = source.resolve(tree)
    assert (dirty.dirty, dirty.ldflags_revision) == (True, f"{commit}-dirty")
    assert dirty.description == f"{tree} (git {commit[:7]}, dirty)"
    assert dirty.content_hash != clean.content_hash
    (tree / "cmd/scheduler/new.go").write_text("package main\n")
    assert source.resolve(tree).content_hash != dirty.content_hash


# --- build key and image description ---------------------------------------------------------------------------

def test_build_key_follows_source_and_go_version(third_party: Path, tmp_path: Path):
    tree = hami_fakes.hami_tree(tmp_path / "tree", version="v2.10.0")
    found = source.resolve(tree)
    key = build.build_key(found, "go1.26.8")
    assert key.startswith(f"v2.10.0-{found.content_hash[:12]}-")
    assert build.build_key(source.resolve(tree), "go1.26.8") == key
    assert build.build_key(found, "go1.27.0") != key
    (tree / "VERSION").write_text("v2.10.0\n")  # a trailing newline is a content change too
    assert build.build_key(source.resolve(tree), "go1.26.8") != key


def test_ldflags_are_hamis_makefile_variables(third_party: Path, tmp_path: Path):
    found = source.resolve(hami_fakes.hami_tree(tmp_path / "tree"))
    flags = build.ldflags(found, "20260101-00:00:00")
    assert flags.startswith("-s -w ")
    for variable in ("pkg/version.version=v9.9.9", "pkg/device-plugin/nvidiadevice/nvinternal/info.version=v9.9.9",
                     "pkg/version.revision=unknown",
                     "pkg/version.buildDate=20260101-00:00:00"):
        assert f"-X github.com/Project-HAMi/HAMi/{variable}" in flags


def test_image_description_reads_the_final_stage(tmp_path: Path):
    tree = hami_fakes.hami_tree(tmp_path / "tree")
    described = image.describe(tree / "docker" / "Dockerfile", "v9.9.9")
    assert described["base"] == "ubuntu:22.04"
    assert described["env"] == {
        "PATH": "/k8s-vgpu/bin:" + image.DOCKER_DEFAULT_PATH,
        "NVIDIA_VISIBLE_DEVICES": "all",
        "NVIDIA_DRIVER_CAPABILITIES": "compute,utility",
    }
    assert described["labels"] == {"version": "v9.9.9"}
    assert described["entrypoint"] == ["/bin/bash", "-c", "entrypoint.sh  $DEST_DIR"]
    assert described["references"] == ["docker.io/projecthami/hami:v9.9.9", "projecthami/hami:v9.9.9"]
    assert described["files"] == ["/k8s-vgpu/bin", "/k8s-vgpu/lib", "/k8s-vgpu/lib/nvidia/libvgpu.so.v9.9.9",
                                  "/k8s-vgpu/bin/vgpu-init.sh", "/k8s-vgpu/bin/entrypoint.sh"]


def test_place_libvgpu_puts_the_library_where_the_dockerfile_does(tmp_path: Path):
    tree = hami_fakes.hami_tree(tmp_path / "tree")
    root = tmp_path / "build"
    image.lay_out(tree, root, "v9.9.9")
    assert image.missing_files(root) == ["/k8s-vgpu/lib/nvidia/libvgpu.so.v9.9.9"]
    library = tmp_path / "libvgpu.so"
    library.write_bytes(b"\x7fELF first")
    placed = image.place_libvgpu(root, library)
    assert placed == root / "image/k8s-vgpu/lib/nvidia/libvgpu.so.v9.9.9"
    library.write_bytes(b"\x7fELF second")
    assert image.place_libvgpu(root, library).read_bytes() == b"\x7fELF second"
    assert image.missing_files(root) == []
    assert sorted(p.name for p in placed.parent.iterdir()) == ["ld.so.preload", "libvgpu.so.v9.9.9"]
    assert json.loads((root / "image.json").read_text())["libvgpu"] == "/k8s-vgpu/lib/nvidia/libvgpu.so.v9.9.9"
    with pytest.raises(SandboxError, match="is not a file"):
        image.place_libvgpu(root, tmp_path / "absent.so")
