#!/usr/bin/env bash
# Pack what a lent GPU machine lacks for the GPU twin into .gpu-twin/pack.tar.xz (kept out of git), under the 64 MiB
# one device call carries: the kube and HAMi multi-call binaries, helm, the exec helper and kwok's CRDs, the Python
# packages for CPython 3.12, HAMi-core's source and the suite as committed (see tools/gpu_twin_pack.py).
#
#   tools/gpu-twin/pack.sh [--tree head|worktree]      # then, on the device (run tool):
#   run(command="tools/gpu-twin/run-on-device.sh", carry=[".gpu-twin"], kind="nvidia-h200-x2", timeout_s=600)
#   tools/gpu-twin/archive.sh /work/.device/<...>/results.tar.xz   # file the results like any run
set -euo pipefail
cd "$(dirname "$0")/../.."
python=${PYTHON:-.venv/bin/python}
"$python" -m tools.gpu_twin_pack pack "$@"
du -b .gpu-twin/pack.tar.xz
