#!/usr/bin/env bash
# On a lent GPU machine (as root, from the repository root, $OUT set by the device tool): unpack the GPU twin's pack
# (.gpu-twin/pack.tar.xz, carried with the call) and run tools/gpu_twin_device.py from the packed suite: HAMi-core
# and the CUDA C workload built here, the twin up in GPU-node mode, robot passes gpu / fault / more; everything
# lands in $OUT (results.tar.xz, summary.json, run.log).
#
#   tools/gpu-twin/run-on-device.sh [--budget SECONDS] [--passes gpu,fault,more]
set -uo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
pack=${GPU_TWIN_PACK:-$repo/.gpu-twin/pack.tar.xz}
work=${GPU_TWIN_WORK:-/tmp/gpu-twin}
out=${OUT:-$work/out}
mkdir -p "$work" "$out"
began=$(date +%s)
xz -dc -T0 "$pack" | tar -C "$work" -xf - || { echo "run-on-device: cannot unpack $pack" | tee "$out/run.log"; exit 2; }
echo "[run-on-device] unpacked $(du -sb "$pack" | cut -f1) bytes into $work in $(( $(date +%s) - began )) s" \
    | tee -a "$out/run.log"
# NVLink multicast stays off, as the machine's owners ask, also in what the twin starts.
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export HAMI_E2E_PREBUILT=$work/prebuilt HAMI_E2E_CACHE=$work/cache HAMI_E2E_THIRD_PARTY=$work/third_party
export PYTHONPATH=$work/site PYTHONDONTWRITEBYTECODE=1
cd "$work/tree" || exit 2
python3 -m tools.gpu_twin_device --work "$work" --out "$out" "$@"
