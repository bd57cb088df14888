"""The parser reads nvidia-smi 535's layout (the sandbox's GPU twin) and the real 580 layout alike.

The ``twin-535-*`` fixtures were captured with ``kubectl exec <pod> -- sh -c '<command> 2>&1'`` in a 3000 MiB / 30 %
pod of the sandbox (HAMi 2.10.0's device plugin, HAMi-core, Debian's nvidia-smi 535.261.03 over the mock NVML of
an H100 with driver 580.159.04 / CUDA 13.0; see tests/fixtures/nvidia-smi/README.md). Each is paired with the same
command's capture on a real H100 (nvidia-smi 580.159.04) under a 3000m HAMi-core limit: the parsed GPUs must agree in
everything but the UUID, which is each machine's own.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from hami_e2e.parsers.nvidia_smi import GpuInfo, NvidiaSmiReport, parse_nvidia_smi_report

OURS = Path(__file__).parent / "fixtures" / "nvidia-smi"
SHARED = Path(__file__).parents[1] / ".." / "shared" / "fixtures" / "nvidia-smi"
TWIN_UUID = "GPU-0a1e5c00-0000-4000-8000-000000000001"   # the sandbox topology's gpu-node-0 card 1
H100 = "NVIDIA H100 80GB HBM3"
BUS_ID = "00000000:00:06.0"

# twin 535 capture -> (folder, real 580 capture of the same command), with the format both must be detected as
PAIRS = {
    "twin-535-3000m-table.txt": (SHARED, "h100-hami-limit-3000m-table.txt", "table"),
    "twin-535-3000m-query.csv": (SHARED, "h100-hami-limit-3000m-query.csv", "csv"),
    "twin-535-3000m-noheader-nounits.csv": (OURS, "h100-hami-3000m-noheader-nounits.csv", "csv-noheader"),
    "twin-535-3000m-L.txt": (OURS, "h100-hami-3000m-L.txt", "list"),
    "twin-535-3000m-q.txt": (OURS, "h100-hami-3000m-q.txt", "query"),
    "twin-535-3000m-q-memory.txt": (OURS, "h100-hami-3000m-q-memory.txt", "query"),
    "twin-535-3000m-holder-table.txt": (OURS, "h100-hami-3000m-holder-table.txt", "table"),
}


def parse(folder: Path, name: str) -> NvidiaSmiReport:
    path = folder / name
    if not path.is_file():
        pytest.skip(f"{path.resolve()} not found (CI keeps ../shared beside the clone)")
    return parse_nvidia_smi_report(path.read_text())


def without_uuid(gpu: GpuInfo) -> GpuInfo:
    return dataclasses.replace(gpu, uuid=None)


@pytest.mark.parametrize("twin_name", PAIRS)
def test_535_and_580_captures_of_one_command_parse_alike(twin_name: str) -> None:
    folder, real_name, expected_format = PAIRS[twin_name]
    twin, real = parse(OURS, twin_name), parse(folder, real_name)
    assert (twin.format, real.format) == (expected_format, expected_format)
    assert [without_uuid(g) for g in twin.gpus] == [without_uuid(g) for g in real.gpus]
    assert (twin.driver_version, twin.cuda_version) == (real.driver_version, real.cuda_version)
    if real.gpus[0].uuid is not None:
        assert twin.gpus[0].uuid == TWIN_UUID


@pytest.mark.parametrize(("name", "banner"), [("twin-535-3000m-table.txt", "535.261.03"),
                                              ("twin-535-3000m-holder-table.txt", "535.261.03"),
                                              ("twin-535-3000m-loglevel4-table.txt", "535.261.03"),
                                              ("h100-hami-3000m-holder-table.txt", "580.159.04")])
def test_the_twin_tables_are_535_layout_and_the_real_ones_580(name: str, banner: str) -> None:
    # Guards the pairing above: a twin table captured with another nvidia-smi would prove nothing about 535.
    assert f"| NVIDIA-SMI {banner} " in (OURS / name).read_text()


def test_535_table_gives_the_limit_as_total_and_the_row_values() -> None:
    report = parse(OURS, "twin-535-3000m-table.txt")
    assert report.gpus == [GpuInfo(0, H100, None, 0, 3000, 3000, BUS_ID)]
    assert (report.driver_version, report.cuda_version) == ("580.159.04", "13.0")
    assert len(report.hami_core_lines) == 2   # HAMi-core's two exit lines after the table


def test_535_table_with_a_holder_and_an_empty_process_box() -> None:
    # 535's "Processes" box stays empty in the twin (no row, no "No running processes found"); the memory column
    # still counts the other process's 1800 MiB and its 518 MiB context.
    report = parse(OURS, "twin-535-3000m-holder-table.txt")
    assert report.gpus == [GpuInfo(0, H100, None, 2318, 3000, 682, BUS_ID)]


def test_535_csv_with_a_holder_gives_used_and_free() -> None:
    (gpu,) = parse(OURS, "twin-535-3000m-holder-query.csv").gpus
    assert (gpu.uuid, gpu.memory_used_mib, gpu.memory_total_mib, gpu.memory_free_mib) == (TWIN_UUID, 2318, 3000, 682)


def test_535_detailed_query_keeps_its_top_level_fields() -> None:
    (gpu,) = parse(OURS, "twin-535-3000m-q.txt").gpus
    assert (gpu.fields["Product Name"], gpu.fields["GPU UUID"]) == (H100, TWIN_UUID)
