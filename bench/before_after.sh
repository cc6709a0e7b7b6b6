#!/usr/bin/env bash
# Runs one benchmark on an earlier commit and on the work tree, alternately, in one go, so that
# the two sets of figures share the machine's state (load, caches) and can be compared as ratios.
#
#   bash bench/before_after.sh REV ROUNDS BENCH [ARGS...]
#   e.g. bash bench/before_after.sh d9406cb 2 bench/heartbeats.py --seconds 5
#
# With SAME_SCRIPT=1 the work tree's benchmark script is copied into the earlier checkout first, so
# both sides run the same measurement (e.g. a flag the earlier script lacked); the script imports
# the colibri beside it, so each side still measures its own code.
#
# The earlier commit is checked out (git worktree, detached) under a temp dir and run with this
# checkout's .venv, its own sources first on PYTHONPATH (the venv's colibri is an editable path
# entry, which PYTHONPATH precedes), so the CLI subprocesses the benchmarks start run its code.
set -euo pipefail
cd "$(dirname "$0")/.."
rev=$1 rounds=$2 bench=$3
shift 3
python=$PWD/.venv/bin/python
before=$(mktemp -d /tmp/colibri-before.XXXXXX)
trap 'git worktree remove --force "$before" >/dev/null 2>&1 || rm -rf "$before"' EXIT
git worktree add --detach -q "$before" "$rev"
if [ "${SAME_SCRIPT:-0}" = 1 ]; then
    cp "$bench" "$before/$bench"
fi
echo "# $bench $* : before = $(git rev-parse --short "$rev"), after = $(git rev-parse --short HEAD) + work tree"
echo "# load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
for round in $(seq 1 "$rounds"); do
    echo "## round $round: before"
    (cd "$before" && PYTHONPATH="$before" "$python" "$bench" "$@")
    echo "## round $round: after"
    "$python" "$bench" "$@"
done
echo "# load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
