#!/bin/sh
# agent-jail-bootstrap.sh: prepare a colibri agent jail.  Runs inside the jail as root (the
# colibri/agent Bastillefile calls it).  Idempotent: run it again and it changes nothing.
#
# Packages are version-pinned and installed only from the local package cache: when any pinned
# package file is missing it refuses up front, naming what is missing, instead of installing half
# of them.  Thin jails copy /var from their release, so warm the release's cache once on the host:
#   pkg fetch -y -o /usr/local/bastille/releases/14.3-RELEASE/var/cache/pkg python311-3.11.13
set -eu

PINNED="${COLIBRI_PINNED_PACKAGES:-python311-3.11.13}"
CACHE="${PKG_CACHEDIR:-/var/cache/pkg}"
AGENT_USER="${COLIBRI_AGENT_USER:-agent}"
AGENT_UID=1001
AGENT_GID=""
# colibri allocates each tenant's agent its own uid/gid and writes them here before applying the
# template (bastille eval's --arg values, so they never travel that way).  Digits only; the file
# is read, never sourced.
IDS_FILE=/usr/local/etc/colibri/agent-ids
if [ -e "$IDS_FILE" ]; then
    AGENT_UID="$(sed -n 's/^uid=\([0-9][0-9]*\)$/\1/p' "$IDS_FILE")"
    AGENT_GID="$(sed -n 's/^gid=\([0-9][0-9]*\)$/\1/p' "$IDS_FILE")"
    if [ -z "$AGENT_UID" ] || [ -z "$AGENT_GID" ]; then
        echo "agent-jail-bootstrap: $IDS_FILE has no uid=N and gid=N lines; nothing was changed."
        exit 1
    fi
fi

say() { echo "agent-jail-bootstrap: $*"; }

# pkg fetch -o DIR puts packages in DIR/All/ (pkg-fetch(8)); a flat cache works too.
cached() { for f in "$CACHE/$1.pkg" "$CACHE/All/$1.pkg"; do [ -f "$f" ] && { echo "$f"; return 0; }; done; return 1; }

missing=""
for pkgver in $PINNED; do
    if pkg info -e "$pkgver" >/dev/null 2>&1; then
        continue
    fi
    cached "$pkgver" >/dev/null || missing="$missing $pkgver"
done
if [ -n "$missing" ]; then
    say "cold package cache: missing$missing in $CACHE; nothing was installed."
    say "warm it on the host (pkg fetch -o <release or jail root>$CACHE <package>) and apply the template again."
    exit 1
fi

for pkgver in $PINNED; do
    if pkg info -e "$pkgver" >/dev/null 2>&1; then
        say "$pkgver already installed"
    else
        pkg add "$(cached "$pkgver")"
        say "$pkgver installed"
    fi
done

if pw usershow "$AGENT_USER" >/dev/null 2>&1; then
    have="$(pw usershow "$AGENT_USER" | cut -d: -f3,4)"
    if [ -n "$AGENT_GID" ] && [ "$have" != "$AGENT_UID:$AGENT_GID" ]; then
        say "user $AGENT_USER exists with uid:gid $have, not $AGENT_UID:$AGENT_GID; refusing."
        exit 1
    fi
    say "user $AGENT_USER exists"
else
    if [ -n "$AGENT_GID" ]; then
        if ! pw groupshow "$AGENT_USER" >/dev/null 2>&1; then
            pw groupadd "$AGENT_USER" -g "$AGENT_GID"
        fi
        pw useradd "$AGENT_USER" -u "$AGENT_UID" -g "$AGENT_GID" -m -d "/home/$AGENT_USER" -s /usr/sbin/nologin -c "colibri agent"
    else
        pw useradd "$AGENT_USER" -u "$AGENT_UID" -m -d "/home/$AGENT_USER" -s /usr/sbin/nologin -c "colibri agent"
    fi
    say "user $AGENT_USER created"
fi
chmod 0750 "/home/$AGENT_USER"

install -d -m 0755 /usr/local/etc/colibri /usr/local/share/colibri /usr/local/libexec/colibri/handlers /var/run/colibri
chmod 0555 /usr/local/etc/rc.d/colibri_mother
sysrc colibri_mother_enable=YES >/dev/null
say "done"
