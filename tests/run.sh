#!/usr/bin/env bash
# The test command: installs what is missing, then lints, type-checks and runs the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
echo "== ruff check";  ruff check .
echo "== ruff format"; ruff format --check .
echo "== mypy";        mypy --strict colibri
# a test file stays on one worker (its module fixtures); the files start in collection order, the
# slowest first (tests/conftest.py SLOWEST_FILES), not xdist's default of the most tests first
echo "== pytest";      pytest -n auto --dist loadfile --no-loadscope-reorder "$@"
