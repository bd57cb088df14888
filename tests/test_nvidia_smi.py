"""Parser tests on real nvidia-smi output: the shared fixtures (../shared) and our own captures (tests/fixtures)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hami_e2e.parsers.nvidia_smi import (
    DEFAULT_QUERY_FIELDS,
    cuda_version,
    detect_format,
    driver_version,
    find_oom_events,
    hami_core_lines,
    parse_nvidia_smi,
    parse_nvidia_smi_report,
    strip_hami_core_lines,
)

SHARED = Path(__file__).parents[1] / ".." / "shared" / "fixtures" / "nvidia-smi"
OURS = Path(__file__).parent / "fixtures" / "nvidia-smi"
H100 = "NVIDIA H100 80GB HBM3"
H100_MIB = 81559

needs_shared = pytest.mark.skipif(
    not SHARED.is_dir(), reason=f"shared fixtures not found at {SHARED.resolve()} (CI keeps ../shared beside the clone)"
)


def shared(name: str) -> str:
    return (SHARED / name).read_text()


def ours(name: str) -> str:
    return (OURS / name).read_text()


# ------------------------------------------------------------------------------------ every fixture file parses
def _nvidia_smi_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix in (".txt", ".csv") and not p.name.startswith("workload-"))


@needs_shared
@pytest.mark.parametrize("path", _nvidia_smi_files(SHARED), ids=lambda p: p.name)
def test_every_shared_fixture_parses_to_one_h100(path: Path) -> None:
    gpus = parse_nvidia_smi(path.read_text())
    assert [g.index for g in gpus] == [0]
    assert gpus[0].name == H100
    assert gpus[0].memory_total_mib in (3000, H100_MIB)


def test_shared_folder_is_not_empty_when_present() -> None:
    if SHARED.is_dir():
        assert len(_nvidia_smi_files(SHARED)) >= 4


@pytest.mark.parametrize("path", _nvidia_smi_files(OURS), ids=lambda p: p.name)
def test_every_own_fixture_parses_to_one_gpu(path: Path) -> None:
    gpus = parse_nvidia_smi(path.read_text())
    assert [g.index for g in gpus] == [0]
    assert gpus[0].name in (H100, None)


# ------------------------------------------------------------------------------------------------- the table
@needs_shared
def test_plain_table_reports_the_whole_card() -> None:
    report = parse_nvidia_smi_report(shared("h100-plain-table.txt"))
    assert report.format == "table"
    (gpu,) = report.gpus
    assert (gpu.index, gpu.name, gpu.uuid) == (0, H100, None)
    assert (gpu.memory_used_mib, gpu.memory_total_mib, gpu.memory_free_mib) == (0, H100_MIB, H100_MIB)
    assert gpu.bus_id == "00000000:00:06.0"
    assert (report.driver_version, report.cuda_version) == ("580.159.04", "13.0")
    assert report.hami_core_lines == []


@needs_shared
def test_hami_table_reports_the_limit_and_keeps_the_hami_lines() -> None:
    text = shared("h100-hami-limit-3000m-table.txt")
    report = parse_nvidia_smi_report(text)
    assert report.gpus[0].memory_total_mib == 3000
    assert len(report.hami_core_lines) == 3
    assert "Initializing" in report.hami_core_lines[0]
    assert driver_version(text) == "580.159.04"
    assert cuda_version(text) == "13.0"


def test_table_with_debug_lines_between_rows_still_parses() -> None:
    text = ours("h100-hami-2g-loglevel4-table.txt")
    assert len(hami_core_lines(text)) == 279
    assert len(hami_core_lines(text, level="Debug")) == 271
    (gpu,) = parse_nvidia_smi(text)
    assert (gpu.memory_used_mib, gpu.memory_total_mib) == (0, 2048)


def test_table_with_a_holder_process_shows_used_memory() -> None:
    (gpu,) = parse_nvidia_smi(ours("h100-hami-3000m-holder-table.txt"))
    assert (gpu.memory_used_mib, gpu.memory_total_mib, gpu.memory_free_mib) == (2318, 3000, 682)


def test_per_device_limit_table() -> None:
    assert parse_nvidia_smi(ours("h100-hami-limit0-5g-table.txt"))[0].memory_total_mib == 5120


TWO_GPU_TABLE = """\
+-----------------------------------------------------------------------------------------+
| NVIDIA-SMI 580.159.04             Driver Version: 580.159.04     CUDA Version: 13.0     |
+-----------------------------------------+------------------------+----------------------+
| GPU  Name                 Persistence-M | Bus-Id          Disp.A | Volatile Uncorr. ECC |
| Fan  Temp   Perf          Pwr:Usage/Cap |           Memory-Usage | GPU-Util  Compute M. |
|                                         |                        |               MIG M. |
|=========================================+========================+======================|
|   0  NVIDIA H200                    On  |   00000000:18:00.0 Off |                    0 |
| N/A   30C    P0             75W /  700W |       0MiB /   2048MiB |      0%      Default |
|                                         |                        |             Disabled |
+-----------------------------------------+------------------------+----------------------+
[HAMI-core Msg(7:8:libvgpu.c:871)]: Initializing.....
|   1  NVIDIA H200                    On  |   00000000:2A:00.0 Off |                    0 |
| N/A   31C    P0             76W /  700W |      12MiB /   3072MiB |      0%      Default |
|                                         |                        |             Disabled |
+-----------------------------------------+------------------------+----------------------+
"""


def test_two_gpu_table_gives_each_its_own_limit() -> None:
    gpus = parse_nvidia_smi(TWO_GPU_TABLE)
    assert [(g.index, g.memory_total_mib, g.memory_used_mib) for g in gpus] == [(0, 2048, 0), (1, 3072, 12)]
    assert gpus[1].bus_id == "00000000:2A:00.0"


# ---------------------------------------------------------------------------------------------------- CSV
@needs_shared
def test_csv_with_header_and_units() -> None:
    (gpu,) = parse_nvidia_smi(shared("h100-plain-query.csv"))
    assert gpu.uuid == "GPU-6a25c884-e747-4bc5-07d7-72e044d80133"
    assert (gpu.memory_total_mib, gpu.memory_used_mib, gpu.memory_free_mib) == (H100_MIB, 0, 81079)
    assert gpu.fields["utilization.gpu"] == "0"
    assert driver_version(shared("h100-plain-query.csv")) == "580.159.04"


@needs_shared
def test_csv_with_a_hami_line_after_the_data() -> None:
    report = parse_nvidia_smi_report(shared("h100-hami-limit-3000m-query.csv"))
    assert report.format == "csv"
    assert report.gpus[0].memory_total_mib == 3000
    assert len(report.hami_core_lines) == 2


def test_csv_without_header_uses_the_default_fields() -> None:
    text = ours("h100-hami-3000m-noheader-nounits.csv")
    assert detect_format(text) == "csv-noheader"
    (gpu,) = parse_nvidia_smi(text)
    assert (gpu.uuid, gpu.memory_total_mib, gpu.memory_free_mib) == (
        "GPU-66ba516d-2498-d89e-9b08-8216b65f9ae0",
        3000,
        3000,
    )
    assert DEFAULT_QUERY_FIELDS[3] == "memory.total"


def test_csv_without_header_keeps_units_in_cells() -> None:
    (gpu,) = parse_nvidia_smi(ours("h100-plain-noheader.csv"))
    assert gpu.memory_total_mib == H100_MIB


def test_csv_without_header_with_explicit_fields() -> None:
    (gpu,) = parse_nvidia_smi("[HAMI-core Msg(1:2:x.c:3)]: hello\n0, 2048, NVIDIA H200\n", fields=["index", "memory.total", "name"])
    assert (gpu.index, gpu.memory_total_mib, gpu.name, gpu.uuid) == (0, 2048, "NVIDIA H200", None)


def test_single_column_csv_with_header() -> None:
    (gpu,) = parse_nvidia_smi(ours("h100-hami-limit0-3Gi-query.csv"))
    assert gpu.memory_total_mib == 1
    (gpu,) = parse_nvidia_smi(ours("h100-hami-limit0-0m-query.csv"))
    assert gpu.memory_total_mib == H100_MIB
    assert "invalid device memory limit" in hami_core_lines(ours("h100-hami-limit0-0m-query.csv"), "Warn")[0]


def test_csv_column_count_mismatch_names_the_fields() -> None:
    with pytest.raises(ValueError, match=r"has 3 columns but DEFAULT_QUERY_FIELDS names 6.*pass fields="):
        parse_nvidia_smi("0, 3000, 0\n")


def test_csv_not_available_cells_are_none() -> None:
    (gpu,) = parse_nvidia_smi("index, name, memory.total [MiB], memory.used [MiB]\n0, X, 100 MiB, [N/A]\n")
    assert (gpu.memory_total_mib, gpu.memory_used_mib) == (100, None)


# ------------------------------------------------------------------------------------------------ -L and -q
def test_list_form() -> None:
    for name in ("h100-plain-L.txt", "h100-hami-3000m-L.txt"):
        report = parse_nvidia_smi_report(ours(name))
        assert report.format == "list"
        (gpu,) = report.gpus
        assert (gpu.name, gpu.uuid, gpu.memory_total_mib) == (H100, "GPU-66ba516d-2498-d89e-9b08-8216b65f9ae0", None)


def test_list_form_with_mig_devices() -> None:
    text = "GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-a)\n  MIG 1g.5gb     Device  0: (UUID: MIG-b)\nGPU 1: NVIDIA A100-SXM4-40GB (UUID: GPU-c)\n"
    assert [(g.index, g.uuid) for g in parse_nvidia_smi(text)] == [(0, "GPU-a"), (1, "GPU-c")]


def test_detailed_query_with_a_hami_line_inside_the_header() -> None:
    text = ours("h100-hami-3000m-q.txt")
    report = parse_nvidia_smi_report(text)
    assert report.format == "query"
    (gpu,) = report.gpus
    assert (gpu.name, gpu.uuid, gpu.memory_total_mib, gpu.memory_used_mib, gpu.memory_free_mib) == (
        H100,
        "GPU-66ba516d-2498-d89e-9b08-8216b65f9ae0",
        3000,
        0,
        3000,
    )
    assert gpu.fields["Product Architecture"] == "Hopper"
    assert (report.driver_version, report.cuda_version) == ("580.159.04", "13.0")


def test_detailed_memory_query_reads_fb_total_not_bar1() -> None:
    (gpu,) = parse_nvidia_smi(ours("h100-hami-3000m-q-memory.txt"))
    assert (gpu.name, gpu.uuid, gpu.memory_total_mib) == (None, None, 3000)
    (gpu,) = parse_nvidia_smi(ours("h100-plain-q-memory.txt"))
    assert (gpu.memory_total_mib, gpu.memory_free_mib) == (H100_MIB, 81079)


def test_detailed_query_gpu_count_must_match_attached_gpus() -> None:
    text = ours("h100-plain-q-memory.txt").replace("Attached GPUs                                          : 1", "Attached GPUs : 2")
    with pytest.raises(ValueError, match="Attached GPUs : 2' but has 1"):
        parse_nvidia_smi(text)


# ------------------------------------------------------------------------------------------- HAMi-core lines
def test_oom_events_from_a_torch_workload() -> None:
    events = find_oom_events(ours("workload-torch-3000m-oom.txt"))
    assert len(events) == 2
    assert (events[0].device, events[0].requested_bytes, events[0].limit_bytes) == (0, 4737466368, 3145728000)
    assert events[0].limit_mib == 3000


def test_oom_events_from_a_second_process_sharing_the_limit() -> None:
    (event,) = find_oom_events(ours("workload-cuda-c-3000m-shared-oom.txt"))
    assert (event.requested_bytes, event.limit_bytes) == (4861198336, 3145728000)


def test_oom_text_outside_a_hami_line_is_not_an_event() -> None:
    assert find_oom_events("Device 0 OOM 1 / 2\n") == []


def test_strip_removes_hami_lines_glued_to_output() -> None:
    text = "memory.total [MiB]\n3000 MiB[HAMI-core Msg(1:2:f.c:3)]: Cleanup on exit for PID 1\n\n"
    assert strip_hami_core_lines(text) == ["memory.total [MiB]", "3000 MiB"]
    assert parse_nvidia_smi(text)[0].memory_total_mib == 3000


def test_log_level_1_table_has_no_hami_lines() -> None:
    assert hami_core_lines(ours("h100-hami-2g-loglevel1-table.txt")) == []


# ----------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("[HAMI-core Msg(1:2:libvgpu.c:871)]: Initializing.....\n\n", "empty"),
        ("Failed to initialize NVML: Unknown Error\n", "not understood.*Failed to initialize NVML"),
        ("No devices were found\n", "not understood.*No devices were found"),
        ("+---+\n| NVIDIA-SMI 580 |\n+---+\n", "no GPU section"),
        ("index, memory.total [MiB]\n0, 3000 GiB\n", "memory.total '3000 GiB' is not a MiB figure"),
    ],
)
def test_not_understood_output_raises_a_clear_value_error(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_nvidia_smi(text)


def test_missing_versions_raise() -> None:
    with pytest.raises(ValueError, match="no driver version"):
        driver_version("GPU 0: X (UUID: GPU-1)\n")
    with pytest.raises(ValueError, match="no CUDA version"):
        cuda_version("index\n0\n")


# ------------------------------------------------------------------------------------------- the keywords
@pytest.fixture
def keywords():
    from hami_e2e.core.context import Context
    from hami_e2e.keywords.nvidia_smi import NvidiaSmiKeywords

    return NvidiaSmiKeywords(Context())


def test_keyword_memory_total_failure_says_expected_and_actual(keywords) -> None:
    from hami_e2e.core.errors import HamiE2EFailure

    keywords.gpu_memory_total_should_be(ours("h100-hami-limit0-5g-table.txt"), 5120)
    with pytest.raises(HamiE2EFailure) as failure:
        keywords.gpu_memory_total_should_be(ours("h100-plain-q.txt"), 3000, expected_from="the requested gpumem")
    assert str(failure.value) == (
        "nvidia-smi memory.total of GPU 0 was 81559 MiB, expected 3000 MiB (the requested gpumem): HAMi-core limit "
        "not applied (is libvgpu.so preloaded, CUDA_DISABLE_CONTROL unset, the limit variable set and non-zero?)"
    )
    with pytest.raises(HamiE2EFailure, match="was 1 MiB, expected 3072 MiB.*'3Gi'"):
        keywords.gpu_memory_total_should_be(ours("h100-hami-limit0-3Gi-query.csv"), 3072)
    with pytest.raises(HamiE2EFailure, match="no memory.total for GPU 0"):
        keywords.gpu_memory_total_should_be(ours("h100-plain-L.txt"), 3000)
    with pytest.raises(HamiE2EFailure, match="shows no GPU 1; it lists \\[0\\]"):
        keywords.gpu_memory_total_should_be(ours("h100-plain-L.txt"), 3000, gpu=1)


def test_keyword_percentage_rounds_down_like_hami(keywords) -> None:
    from hami_e2e.core.errors import HamiE2EFailure

    keywords.gpu_memory_total_should_match_percentage("index, memory.total [MiB]\n0, 27186 MiB\n", 33, 82382)
    with pytest.raises(HamiE2EFailure, match="expected 40779 MiB \\(50% of the 81559 MiB card"):
        keywords.gpu_memory_total_should_match_percentage(ours("h100-plain-q.txt"), 50, H100_MIB)


def test_keyword_uuids(keywords) -> None:
    from hami_e2e.core.errors import HamiE2EFailure

    text = ours("h100-hami-3000m-L.txt")
    keywords.gpu_uuids_should_be(text, "GPU-66ba516d-2498-d89e-9b08-8216b65f9ae0")
    with pytest.raises(HamiE2EFailure, match="UUIDs were GPU-66ba.*expected GPU-x"):
        keywords.gpu_uuids_should_be(text, "GPU-x")
    with pytest.raises(HamiE2EFailure, match="table output has no GPU UUIDs"):
        keywords.gpu_uuids_should_be(TWO_GPU_TABLE, "GPU-x")


def test_the_one_hami_core_oom_check() -> None:
    from hami_e2e.parsers.nvidia_smi import hami_core_oom_problem

    text = ours("workload-torch-3000m-oom.txt")
    assert hami_core_oom_problem(text, limit_mib=3000) == ""
    assert hami_core_oom_problem(text, limit_mib=3000, device=0) == ""
    assert "limit of 3145728000 bytes (3000 MiB), expected 2147483648 bytes" in hami_core_oom_problem(text, 2048)
    assert "expected device 1" in hami_core_oom_problem(text, device=1)
    assert "no HAMi-core OOM line" in hami_core_oom_problem(ours("h100-plain-L.txt"))
    asks_less = "[HAMI-core ERROR (pid:1 thread=2 allocator.c:52)]: Device 0 OOM 100 / 3145728000"
    assert "not more than its limit" in hami_core_oom_problem(asks_less)


def test_keyword_log_lines(keywords) -> None:
    from hami_e2e.core.errors import HamiE2EFailure

    keywords.hami_core_log_lines_should_be(ours("h100-hami-2g-loglevel1-table.txt"), "any", expected_count=0)
    keywords.hami_core_log_lines_should_be(ours("h100-hami-2g-loglevel4-table.txt"), "Debug", minimum=1)
    with pytest.raises(HamiE2EFailure, match="had 0 HAMi-core Msg line\\(s\\), expected at least 1"):
        keywords.hami_core_log_lines_should_be(ours("h100-hami-2g-loglevel1-table.txt"), "Msg", minimum=1)


def test_every_keyword_has_docs_with_an_example(keywords) -> None:
    from robotlibcore import DynamicCore

    lib = DynamicCore([keywords])
    names = lib.get_keyword_names()
    assert "GPU Memory Total Should Be" in names
    for name in names:
        doc = lib.get_keyword_documentation(name)
        assert "Example:" in doc, name
        assert lib.get_keyword_tags(name), name


def test_keyword_memory_used_at_least(keywords) -> None:
    from hami_e2e.core.errors import HamiE2EFailure

    keywords.gpu_memory_used_should_be_at_least(ours("h100-hami-3000m-holder-table.txt"), 1800)
    with pytest.raises(HamiE2EFailure, match="memory.used of GPU 0 was 0 MiB, expected at least 1800 MiB"):
        keywords.gpu_memory_used_should_be_at_least(ours("h100-hami-3000m-q.txt"), 1800)
    with pytest.raises(HamiE2EFailure, match="no memory.used"):
        keywords.gpu_memory_used_should_be_at_least(ours("h100-plain-L.txt"), 1)
