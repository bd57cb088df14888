#!/usr/bin/env bash
# File a GPU twin device run's results (results.tar.xz from run-on-device.sh) into results/<release>/<timestamp>/
# like any run: one archived run per robot pass, with the target and the device named in the report's metadata.
#
#   tools/gpu-twin/archive.sh RESULTS_TAR_XZ [--release NAME]
set -euo pipefail
cd "$(dirname "$0")/../.."
tarball=$(readlink -f "${1:?usage: archive.sh RESULTS_TAR_XZ [--release NAME]}"); shift
unpacked=$(mktemp -d)
trap 'rm -rf "$unpacked"' EXIT
tar -C "$unpacked" -xJf "$tarball"
${PYTHON:-.venv/bin/python} -m tools.gpu_twin_pack archive "$unpacked/results" "$@"
# the archive's index page, as tools/run_suites.py writes it (its modules import each other from tools/)
PYTHONPATH=tools ${PYTHON:-.venv/bin/python} -c 'import sys; from pathlib import Path; from index_page import write_index; print("index:", write_index(Path("results")))'
