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
# slowest first (tests/conftest.py SLOWEST_FILES), not xdist's default of the most tests first.
# `-n auto` is one worker more than CPUs: much of the suite waits (bw's idle seconds, daemons,
# polls), and a third worker on two cores fills that (docs/PERFORMANCE.md, issue 10); xdist's own
# PYTEST_XDIST_AUTO_NUM_WORKERS, when set, says how many instead.
export PYTEST_XDIST_AUTO_NUM_WORKERS=${PYTEST_XDIST_AUTO_NUM_WORKERS:-$(($(nproc) + 1))}
echo "== pytest";      pytest -n auto --dist loadfile --no-loadscope-reorder "$@"
