#!/usr/bin/env bash
# The GPU host tier in one go, on a machine with one or more NVIDIA GPUs: build HAMi-core from its source archive,
# (optionally) probe CUDA_VISIBLE_DEVICES against a container view, run suites/host/, then the fault-injection run
# without HAMi-core, and leave output.xml, log.html and a summary in one folder.
#
#   tools/gpu-host/run-on-device.sh [--out DIR] [--archive HAMi-core-<commit>.tar.gz] [--wheels DIR] [--probe]
#                                   [--no-fault] [-- robot options for the tier, e.g. --include multi-gpu]
#
#   --out DIR      results folder (default results/gpu-host/<UTC timestamp>): run.log, summary.txt, probe.txt,
#                  tier/{output.xml,log.html}, fault/{output.xml,log.html}
#   --archive      HAMi-core source archive (default: the first of ../shared/third_party/HAMi-core-*.tar.gz and
#                  third_party/HAMi-core-*.tar.gz)
#   --wheels DIR   install robotframework and robotframework-pythonlibcore from these wheels (offline machines);
#                  without it they must be importable already, or pip installs the pinned versions
#   --probe        run tools/gpu-host/probe_visible_devices.py first (two GPUs or more)
#   --no-fault     skip the fault-injection run
# Environment: TIER_TIMEOUT / FAULT_TIMEOUT (seconds, default none) stop a robot run that takes longer, keeping
# its results; PYTHON (default python3) runs robot and the PyTorch workload. Run it as root so that the tests of a
# container given some GPUs can build their mount namespaces. Exit code: the tier's (robot's: failed tests).
set -uo pipefail
cd "$(dirname "$0")/../.."

out="" archive="" wheels="" probe=0 fault=1
python=${PYTHON:-python3}
while [ $# -gt 0 ]; do
    case $1 in
        --out) out=$2; shift 2 ;;
        --archive) archive=$2; shift 2 ;;
        --wheels) wheels=$2; shift 2 ;;
        --probe) probe=1; shift ;;
        --no-fault) fault=0; shift ;;
        --) shift; break ;;
        *) echo "run-on-device: unknown option $1 (see the header of $0)" >&2; exit 2 ;;
    esac
done
out=${out:-results/gpu-host/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$out/tier" "$out/fault"
out=$(readlink -f "$out")
exec > >(tee -a "$out/run.log") 2>&1
say() { echo "[run-on-device $(date +%H:%M:%S)] $*"; }

if [ -z "$archive" ]; then
    archive=$(ls ../shared/third_party/HAMi-core-*.tar.gz third_party/HAMi-core-*.tar.gz 2>/dev/null | head -1)
fi
[ -n "$archive" ] && [ -f "$archive" ] || { say "ERROR: no HAMi-core archive (give --archive)"; exit 2; }

if [ -n "$wheels" ]; then
    say "installing the suite's Python packages from $wheels"
    "$python" -m pip install -q --no-index --no-deps --no-compile --target /tmp/hami-e2e-site "$wheels"/*.whl || exit 2
    export PYTHONPATH=/tmp/hami-e2e-site${PYTHONPATH:+:$PYTHONPATH}
elif ! "$python" -c 'import robot, robotlibcore, yaml' 2>/dev/null; then
    say "installing robotframework, robotframework-pythonlibcore and PyYAML with pip"
    "$python" -m pip install -q robotframework==7.5 robotframework-pythonlibcore==4.6.0 PyYAML==6.0.3 || exit 2
fi

build=${HAMI_CORE_BUILD_DIR:-/tmp/hami-e2e-gpu-host/hami-core}
export HAMI_CORE_CUDA_INCLUDE=${HAMI_CORE_CUDA_INCLUDE:-$PWD/third_party/cuda-headers/include}
tools/gpu-host/build-hami-core.sh "$archive" "$build" || { say "ERROR: HAMi-core did not build"; exit 2; }
cat "$build/build.log" >>"$out/run.log"
commit=$(cat "$build/commit.txt")
nvidia-smi
nvidia-smi --query-gpu=index,uuid,name,memory.total,pci.bus_id,driver_version --format=csv

if [ "$probe" = 1 ]; then
    say "probe: CUDA_VISIBLE_DEVICES against a container view"
    "$python" tools/gpu-host/probe_visible_devices.py --libvgpu "$build/libvgpu.so" 2>&1 | tee "$out/probe.txt"
fi

run_robot() {  # name timeout robot-args...
    local name=$1 limit=$2; shift 2
    local started=$(date +%s) rc
    say "robot: $name"
    if [ -n "$limit" ]; then
        timeout --signal=INT --kill-after=30 "$limit" "$python" -m robot --outputdir "$out/$name" --report NONE \
            --skiponfailure 'known-bug:*' --variable "LIBVGPU:$build/libvgpu.so" \
            --variable "HAMI_CORE_COMMIT:$commit" "$@" suites/host/
    else
        "$python" -m robot --outputdir "$out/$name" --report NONE --skiponfailure 'known-bug:*' \
            --variable "LIBVGPU:$build/libvgpu.so" --variable "HAMI_CORE_COMMIT:$commit" "$@" suites/host/
    fi
    rc=$?
    echo "$name: robot exit code $rc, wall time $(($(date +%s) - started)) s" >>"$out/summary.txt"
    return $rc
}

: >"$out/summary.txt"
run_robot tier "${TIER_TIMEOUT:-}" "$@"
tier_rc=$?
if [ "$fault" = 1 ]; then
    # Without HAMi-core every limit check must fail. The quicker CUDA C workload is enough to show it, and the
    # core-limit measurements (which do not depend on the preload to fail) are left out.
    quick=()
    if command -v nvcc >/dev/null || [ -x /usr/local/cuda/bin/nvcc ]; then quick=(--variable WORKLOAD_KIND:cuda-c); fi
    run_robot fault "${FAULT_TIMEOUT:-}" --variable PRELOAD_HAMI_CORE:False "${quick[@]}" --exclude feature:core-limit
fi
"$python" - "$out" >>"$out/summary.txt" <<'EOF'
import sys
from pathlib import Path
from robot.api import ExecutionResult
for name in ("tier", "fault"):
    path = Path(sys.argv[1]) / name / "output.xml"
    if not path.is_file():
        continue
    result = ExecutionResult(str(path))
    stats = result.statistics.total
    print(f"\n{name}: {stats.passed} passed, {stats.failed} failed, {stats.skipped} skipped")
    for test in result.suite.all_tests:
        ids = [t for t in test.tags if t.startswith(("HOST-", "known-bug:"))]
        print(f"  {test.status:4} {' '.join(ids):32} {test.name} :: {' '.join(test.message.split())[:300]}")
EOF
cat "$out/summary.txt"
exit $tier_rc
