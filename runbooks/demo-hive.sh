#!/usr/bin/env bash
# The hive on three hosts on one machine (issue 11): three network namespaces, each a host with a
# real OpenSSH sshd and its own colibri daemon on the sandbox backend, one PostgreSQL server, the
# orchestrator in the root namespace.  Shows a tenant on host a whose task runs on a lane of host
# c, then host b lost while its lane holds a task and the task finished once on c (b's late answer
# refused), and tears everything down on exit (namespaces, bridge, sshd, daemons, jails, PostgreSQL).
# About a minute; idempotent (a run killed outright is cleaned up by the next one).
#
# Needs root (namespaces, jails), like colibri on a FreeBSD host.  The driver is
# runbooks/demo_hive.py: it reuses the test suite's rig (tests/rig), which the CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
    echo "demo-hive: run as root (namespaces and jails need it): sudo bash runbooks/demo-hive.sh" >&2
    exit 6
fi
bash tests/setup.sh --runtime

# The rig's parts: OpenSSH's sshd, PostgreSQL's server binaries, ip(8).  Their packages would start
# a system sshd and a PostgreSQL cluster; the demo starts its own, so nothing is started here.
missing=""
for pkg in openssh-server openssh-client postgresql iproute2; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing="$missing $pkg"
done
if [ -n "$missing" ]; then
    echo "demo-hive: installing Debian packages:$missing"
    export DEBIAN_FRONTEND=noninteractive
    policy=/usr/sbin/policy-rc.d
    made_policy=no
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && made_policy=yes
    fi
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
    [ "$made_policy" = yes ] && rm -f "$policy"
fi
# The PostgreSQL driver (colibri's "postgres" extra); tests/rig's PostgreSQL helper lives beside
# the suite's fixtures and imports pytest.
if ! .venv/bin/python -c 'import psycopg, pytest' >/dev/null 2>&1; then
    echo "demo-hive: installing the PostgreSQL driver into .venv"
    .venv/bin/python -m pip install -q -e '.[postgres]' 'pytest>=8.3'
fi
export PATH="$PWD/.venv/bin:$PATH"
exec .venv/bin/python runbooks/demo_hive.py
