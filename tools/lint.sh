#!/usr/bin/env bash
# Lint gate for the Robot Framework files (style guide habit 18); CI calls this script.
# Config: [tool.robocop] in pyproject.toml. Both steps always run, so one CI log shows every finding.
# Fix locally with:  .venv/bin/robocop format suites resources  &&  .venv/bin/robocop check --fix suites resources
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ -z "${ROBOCOP:-}" ]]; then
    if [[ -x .venv/bin/robocop ]]; then ROBOCOP=.venv/bin/robocop; else ROBOCOP=robocop; fi
fi
PATHS=(suites resources)
status=0

echo "== robocop format --check --diff ${PATHS[*]}"
"$ROBOCOP" format --check --diff --no-color "${PATHS[@]}" || status=1

echo "== robocop check ${PATHS[*]}"
"$ROBOCOP" check "${PATHS[@]}" || status=1

exit "$status"
