#!/usr/bin/env bash
# Installs everything colibri's demo and test suite need on a fresh Debian machine (idempotent):
# Debian packages (bubblewrap, PostgreSQL, OpenSSH), the pinned Bitwarden CLI from npm, and a
# Python virtual environment in .venv with colibri and its development tools.
#   tests/setup.sh            everything (tests)
#   tests/setup.sh --runtime  only what the demo needs (bubblewrap, .venv)
set -euo pipefail
cd "$(dirname "$0")/.."

runtime_only=no
[ "${1:-}" = "--runtime" ] && runtime_only=yes

apt_packages="bubblewrap"
[ "$runtime_only" = no ] && apt_packages="$apt_packages postgresql openssh-server"

missing=""
for pkg in $apt_packages; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing="$missing $pkg"
done
if [ -n "$missing" ]; then
    echo "setup: installing Debian packages:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # The postgresql package would start a cluster of its own; the tests start theirs.
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv"
    "$python" -m venv .venv
fi
stamp=.venv/.colibri-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "setup: installing colibri into .venv"
    .venv/bin/python -m pip install -q --upgrade pip
    if [ "$runtime_only" = yes ]; then
        .venv/bin/python -m pip install -q -e .
    else
        .venv/bin/python -m pip install -q -e '.[dev]'
        touch "$stamp"
    fi
fi

if [ "$runtime_only" = no ] && [ -f tests/tools/package-lock.json ] && [ ! -x tests/tools/node_modules/.bin/bw ]; then
    echo "setup: installing the pinned Bitwarden CLI (npm ci in tests/tools)"
    (cd tests/tools && npm ci --no-audit --no-fund --loglevel=error)
fi
echo "setup: ready"
