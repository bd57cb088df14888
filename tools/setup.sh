#!/usr/bin/env bash
# Prepare a fresh machine: the Python venv with the pinned requirements and this project installed editable (the
# keyword library of libraries/ and the sandbox package become importable from anywhere, see pyproject.toml), then
# the sandbox's binaries and tools (built from the Go module proxy on first use, reused from ~/.cache/hami-e2e).
# Usage: tools/setup.sh [--no-sandbox]
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
  echo "setup: Python >= 3.10 is needed ($python is $("$python" --version 2>&1))" >&2
  exit 2
fi
stamp=.venv/.requirements.sha256
want=$(cat requirements.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing the pinned Python requirements into .venv"
  "$python" -m venv .venv
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
  echo "$want" > "$stamp"
fi
if [ "${1:-}" != "--no-sandbox" ]; then
  .venv/bin/python -m sandbox build >/dev/null
fi
