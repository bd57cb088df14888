"""The GPU twin on real GPUs without a GPU: the host driver's isolation spec, the binds GPU-node mode gives
containers, the prebuilt binaries' checks and the multi-call source rewrite."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sandbox import gpu_node, prebuilt
from sandbox.agent.host_driver import HostDriver, HostGpu
from sandbox.errors import SandboxError
from tools.gpu_twin_multicall import _mainless

GPU0 = HostGpu("GPU-aaaa", 0, 0, "0000:00:06.0")
GPU1 = HostGpu("GPU-bbbb", 1, 1, "0000:00:07.0")


def driver() -> HostDriver:
    return HostDriver("vm", (GPU0, GPU1), ("/dev/nvidiactl", "/dev/nvidia-uvm"), ("/opt/torch/.venv",),
                      ("/usr/bin/nvidia-modprobe",), {"LD_LIBRARY_PATH": "/usr/local/nvidia/lib64"})


def test_allocated_container_gets_only_its_gpu_and_no_mknod() -> None:
    spec = driver().isolation("GPU-bbbb", allocated=True)
    assert spec["devices"] == ["/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia1"]
    assert spec["proc_gpus"] == ["0000:00:07.0"]
    assert spec["mask"] == ["/usr/bin/nvidia-modprobe"]
    assert spec["drop_mknod"] is True


def test_device_plugin_sees_all_gpus_unreduced() -> None:
    spec = driver().isolation("all", allocated=False)
    assert spec["devices"][-2:] == ["/dev/nvidia0", "/dev/nvidia1"]
    assert spec["proc_gpus"] is None and spec["mask"] == [] and spec["drop_mknod"] is False


def test_unknown_visible_device_is_an_error() -> None:
    with pytest.raises(ValueError, match="GPU-cccc"):
        driver().isolation("GPU-cccc", allocated=True)


def test_driver_library_folder_is_appended_to_the_library_path() -> None:
    assert driver().container_env({"LD_LIBRARY_PATH": "/a"}) == {"LD_LIBRARY_PATH": "/a:/usr/local/nvidia/lib64"}


def test_load_reads_what_up_wrote(tmp_path: Path) -> None:
    (tmp_path / "gpu-node.json").write_text(json.dumps({
        "node": "vm", "gpus": [GPU0.__dict__], "control_devices": ["/dev/nvidiactl"], "binds": [], "masked": [],
        "env": {}}))
    loaded = HostDriver.load(tmp_path / "gpu-node.json")
    assert loaded is not None and loaded.gpus == (GPU0,)
    assert HostDriver.load(tmp_path / "missing.json") is None


def test_binds_leave_out_what_every_container_has(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    (venv / "lib").mkdir(parents=True)
    assert gpu_node._outside_usr(["/usr", "/usr/lib/x86_64-linux-gnu", str(venv), str(venv / "lib")]) == [str(venv)]


def test_prebuilt_refuses_another_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "prebuilt.json").write_text(json.dumps({"kubernetes": "v1.36.3", "hami_version": "v2.10.0",
                                                        "hami_build": "b"}))
    monkeypatch.setenv(prebuilt.ENV, str(tmp_path))
    assert prebuilt.kube_bin_dir("v1.36.3") == tmp_path / "kube"
    assert prebuilt.hami_build_dir(None) == tmp_path / "hami" / "b"
    with pytest.raises(SandboxError, match=r"not v1\.34\.4"):
        prebuilt.kube_bin_dir("v1.34.4")
    with pytest.raises(SandboxError, match=r"not 2\.9\.0"):
        prebuilt.hami_build_dir("2.9.0")
    monkeypatch.delenv(prebuilt.ENV)
    assert prebuilt.kube_bin_dir("v1.36.3") is None


def test_a_command_becomes_a_package_with_main() -> None:
    text = "// doc\npackage main\n\nfunc main() {\n\tmainly()\n}\n"
    assert _mainless(text, "scheduler") == "// doc\npackage scheduler\n\nfunc Main() {\n\tmainly()\n}\n"
