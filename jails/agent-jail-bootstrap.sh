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
AGENT_UID="${COLIBRI_AGENT_UID:-1001}"

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
    say "user $AGENT_USER exists"
else
    pw useradd "$AGENT_USER" -u "$AGENT_UID" -m -d "/home/$AGENT_USER" -s /usr/sbin/nologin -c "colibri agent"
    say "user $AGENT_USER created"
fi
chmod 0750 "/home/$AGENT_USER"

install -d -m 0755 /usr/local/etc/colibri /usr/local/share/colibri /usr/local/libexec/colibri/handlers /var/run/colibri
chmod 0555 /usr/local/etc/rc.d/colibri_mother
sysrc colibri_mother_enable=YES >/dev/null
say "done"
