"""Mock NVML profiles (sandbox.gpu.profile): the values nvidia-smi will print, and the profiles refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sandbox.errors import SandboxError
from sandbox.gpu.profile import Gpu, profile, write_profile

UUID_0 = "GPU-6a25c884-e747-4bc5-07d7-72e044d80133"
UUID_1 = "GPU-11111111-2222-3333-4444-555555555555"


def test_one_h100_has_the_captured_card_values(tmp_path: Path) -> None:
    written = yaml.safe_load(write_profile(tmp_path / "config.yaml", [Gpu(0, UUID_0)]).read_text())
    assert written["system"]["driver_version"] == "580.159.04"
    assert (written["system"]["cuda_version_major"], written["system"]["cuda_version_minor"]) == (13, 0)
    (device,) = written["devices"]
    assert device["uuid"] == UUID_0 and device["name"] == "NVIDIA H100 80GB HBM3"
    assert device["pci"]["bus_id"] == "0000:00:06.0"
    memory = device["memory"]
    assert memory["total_bytes"] == 81559 << 20  # nvidia-smi: 81559 MiB total
    assert memory["free_bytes"] == 81079 << 20  # and 81079 MiB free at idle (480 MiB reserved)


def test_gpus_keep_their_own_name_memory_and_bus() -> None:
    devices = profile([Gpu(0, UUID_0), Gpu(1, UUID_1, name="NVIDIA A100", memory_mib=40960,
                                           pci_bus_id="0000:1B:00.0")], driver="535.261.03", cuda="12.2")["devices"]
    assert [d["index"] for d in devices] == [0, 1]
    assert devices[1]["name"] == "NVIDIA A100" and devices[1]["memory"]["total_bytes"] == 40960 << 20
    assert [d["pci"]["bus_id"] for d in devices] == ["0000:00:06.0", "0000:1B:00.0"]


@pytest.mark.parametrize(
    ("gpus", "message"),
    [
        ([], "1 to 8 GPUs"),
        ([Gpu(i, f"GPU-00000000-0000-0000-0000-00000000000{i}") for i in range(9)], "1 to 8 GPUs"),
        ([Gpu(1, UUID_0)], "indices must run 0..0"),
        ([Gpu(0, "6a25c884")], "is not a GPU UUID"),
        ([Gpu(0, UUID_0), Gpu(1, UUID_0)], "must differ"),
        ([Gpu(0, UUID_0, memory_mib=100, reserved_mib=100)], "memory_mib > reserved_mib"),
    ],
)
def test_bad_profiles_are_refused(gpus: list[Gpu], message: str) -> None:
    with pytest.raises(SandboxError, match=message):
        profile(gpus)


def test_bad_versions_are_refused() -> None:
    with pytest.raises(SandboxError, match="CUDA version"):
        profile([Gpu(0, UUID_0)], cuda="thirteen")
