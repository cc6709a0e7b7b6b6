#!/usr/bin/env bash
# The main job on a fresh Debian machine: install what the demo needs, then run the colibri chain
# on the sandbox backend with a private state directory (./.colibri-demo), printing each step.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/setup.sh --runtime
export PATH="$PWD/.venv/bin:$PATH"
demo="$PWD/.colibri-demo"
rm -rf "$demo"
mkdir -p "$demo"
: >"$demo/colibri.toml"
export COLIBRI_CONFIG="$demo/colibri.toml" COLIBRI_STATE_DIR="$demo/db" COLIBRI_RUN_DIR="$demo/run" \
       COLIBRI_LOG_DIR="$demo/log"

step() { printf '\n== %s\n$ %s\n' "$1" "${*:2}"; "${@:2}"; }

step "register a tenant (tenant id == jail name == collection)" colibri register-tenant demo
step "registering again with the same fields changes nothing" colibri register-tenant demo
step "list tenants" colibri list-tenants
step "the same as JSON" colibri list-tenants --json
step "one tenant" colibri show-tenant demo
printf '\ndemo: done (state in %s)\n' "$demo"
