#!/usr/bin/env bash
# The main job on a fresh Debian machine: install what the demo needs, then run the whole colibri
# chain on the sandbox backend (real bubblewrap jails), with a private state directory
# (./.colibri-demo) and staged secrets instead of a Vaultwarden (a fresh machine has none):
#
#   register-tenant → spawn-agent (jail, .env 0600, mother skill) → the mother registers with the
#   daemon → a task is routed to it → the agent dies holding a task: stale, lost, task re-queued →
#   destroy-agent.
#
# Needs root (bubblewrap namespaces, chown to the jail user), like colibri on a FreeBSD host.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
    echo "demo: run as root (jails need it): sudo bash runbooks/demo.sh" >&2
    exit 6
fi
bash tests/setup.sh --runtime
export PATH="$PWD/.venv/bin:$PATH"

demo="$PWD/.colibri-demo"
tenant=demo
if [ -d "$demo" ]; then  # a previous run: take its jail down first, then start afresh
    COLIBRI_CONFIG="$demo/colibri.toml" COLIBRI_STATE_DIR="$demo/db" COLIBRI_RUN_DIR="$demo/run" \
        colibri destroy-agent "$tenant" --yes >/dev/null 2>&1 || true
    rm -rf "$demo"
fi
mkdir -p "$demo"
: >"$demo/colibri.toml"
export COLIBRI_CONFIG="$demo/colibri.toml" COLIBRI_STATE_DIR="$demo/db" COLIBRI_RUN_DIR="$demo/run" \
       COLIBRI_LOG_DIR="$demo/log" COLIBRI_JAIL_BACKEND=sandbox
# Short liveness timings so the demo shows stale → lost within seconds (production: 10/30/90 s).
export COLIBRI_HEARTBEAT_INTERVAL=0.5 COLIBRI_AGENT_STALE_AFTER=2 COLIBRI_AGENT_LOST_AFTER=4

step() { printf '\n== %s\n$ %s\n' "$1" "${*:2}"; "${@:2}"; }
wait_for() {  # wait_for DESCRIPTION SECONDS COMMAND...: retry until COMMAND succeeds
    local what=$1 limit=$2 i=0
    shift 2
    until "$@" >/dev/null 2>&1; do
        i=$((i + 1))
        [ "$i" -le $((limit * 4)) ] || { echo "demo: timed out waiting for $what" >&2; exit 1; }
        sleep 0.25
    done
}
field() { python3 -c "import json,sys; d=json.load(sys.stdin)['data']; print($1)"; }

# The operator stages the tenant's provider key on the host (root-only), instead of a collection.
umask 077
mkdir -p "$COLIBRI_STATE_DIR/staged/$tenant"
printf 'OPENROUTER_API_KEY=sk-or-demo-not-a-real-key\nMODEL=deepseek/deepseek-chat\n' \
    >"$COLIBRI_STATE_DIR/staged/$tenant/provider.env"
umask 022

colibri daemon >"$demo/daemon.log" 2>&1 &
daemon_pid=$!
trap 'kill "$daemon_pid" 2>/dev/null; wait "$daemon_pid" 2>/dev/null || true' EXIT
wait_for "the daemon" 30 test -S "$COLIBRI_RUN_DIR/admin.sock"

# The signed first-party path (issue 13, runbooks/skills.md): the signing machine's steps (keys,
# build, sign, publish the mother into a local repository), then this host pins the root.
keys="$demo/keys" repo="$demo/repo"
mkdir -p "$keys" && chmod 0700 "$keys"
colibri skills keygen "$keys/root.key" >/dev/null
colibri skills keygen "$keys/signing.key" >/dev/null
colibri skills delegate "$keys/signing.key.pub" --repo "$repo" --root-key "$keys/root.key" --days 30 >/dev/null
colibri skills build skills/mother --version 1.0.0 --capability echo --capability sleep \
    --out "$demo/mother-1.0.0.tar" >/dev/null
colibri skills sign "$demo/mother-1.0.0.tar" --key "$keys/signing.key" >/dev/null
colibri skills publish "$demo/mother-1.0.0.tar" --repo "$repo" --key "$keys/signing.key" >/dev/null
export COLIBRI_SKILLS_REPOSITORY="$repo"
step "pin the skills root key on this host: its signed mother goes into every paid tenant's jail" \
    colibri skills trust "$keys/root.key.pub"

step "register a tenant (tenant id == jail name == collection)" colibri register-tenant "$tenant"
step "list tenants" colibri list-tenants
step "spawn its agent: jail, secrets, mother skill" \
    colibri spawn-agent "$tenant" --capability echo --capability sleep
root=$(colibri show-tenant "$tenant" --json | field "d['jail_root']")
step "its tier (paid: signed first-party skills only) and the skills installed in its jail" \
    sh -c "colibri show-tenant $tenant | sed -n '/^tier/p;/^skills/,\$p'"
step "the .env inside the jail: 0600, owned by the jail's agent user (the tenant's agent_uid on the host, 1001 inside)" \
    stat -c '%a %u:%g %n' "$root/home/agent/.env"
wait_for "the agent to register" 30 sh -c "colibri agents --tenant $tenant --json | grep -q '\"state\": \"active\"'"
step "the mother registered over its own socket, with its capabilities" colibri agents --tenant "$tenant"
step "route a task to it and wait for the result" \
    colibri submit-task echo --payload '{"hello": "hive"}' --tenant "$tenant" --wait

task=$(colibri submit-task sleep --payload '{"seconds": 300}' --tenant "$tenant" --json | field "d['id']")
wait_for "task $task to be claimed" 30 sh -c "colibri task $task --json | grep -q '\"state\": \"running\"'"
step "a long task is running on the agent" colibri task "$task"
printf '\n== the agent crashes (kill -9 of the mother inside the jail)\n'
# The jail's pid namespace belongs to its bwrap (run/pids.json); the pidfile holds the jail's pid.
ns_init=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['ns_init'])" "$root/../run/pids.json")
mother=$(cat "$root/var/run/colibri_mother.pid")
nsenter -t "$ns_init" -p -- /bin/kill -KILL "$mother" && echo "killed the mother (pid $mother in the jail)"
wait_for "the agent to go stale" 30 sh -c "colibri agents --tenant $tenant --json | grep -q '\"state\": \"stale\"'"
step "missed heartbeats: stale first, never lost on the first miss" colibri agents --tenant "$tenant"
wait_for "the agent to be lost" 30 sh -c "colibri agents --tenant $tenant --json | grep -q '\"state\": \"lost\"'"
step "after the grace period: lost" colibri agents --tenant "$tenant"
step "its task went back to the queue" colibri task "$task"
step "reconcile: the store and the jails agree" colibri reconcile
step "destroy the agent's jail (the tenant stays registered)" colibri destroy-agent "$tenant" --yes
step "the tenant" colibri show-tenant "$tenant"
printf '\ndemo: the whole chain ran (state and daemon log in %s)\n' "$demo"
