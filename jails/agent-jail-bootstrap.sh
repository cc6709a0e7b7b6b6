#!/bin/sh
# agent-jail-bootstrap.sh: prepare a colibri agent jail.  Runs inside the jail as root (the
# colibri/agent Bastillefile calls it).  Idempotent: run it again and it changes nothing.
#
# Packages are version-pinned and installed only from the local package cache: when any pinned
# package file is missing it refuses up front, naming what is missing, instead of installing half
# of them.  A new thin jail has its own, empty /usr/local, so pkg(8) itself is not installed and
# pkg(7) would only offer to bootstrap it from the network (and fail without a tty): pkg is
# bootstrapped offline from the cache first (pkg(7): `pkg add ./pkg-VERSION.pkg`).  Thin jails
# copy /var from their release, so warm the release's cache once on the host, pkg included:
#   pkg fetch -y -d -o /usr/local/bastille/releases/14.3-RELEASE/var/cache/pkg pkg python311-3.11.13
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
# pkg's own package, whatever its version (the newest by name if there are several).
cached_pkg() { ls "$CACHE"/pkg-[0-9]*.pkg "$CACHE"/All/pkg-[0-9]*.pkg 2>/dev/null | tail -n 1; }
# pkg -N: "a reliable test for whether a system is configured to use pkg" (pkg(7)); it never
# bootstraps, and without pkg(8) pkg info would only print pkg(7)'s bootstrap prompt.
have_pkg8() { pkg -N >/dev/null 2>&1; }
installed() { have_pkg8 && pkg info -e "$1" >/dev/null 2>&1; }

missing=""
PKG_FILE=""
if ! have_pkg8; then
    PKG_FILE="$(cached_pkg)"
    [ -n "$PKG_FILE" ] || missing=" pkg"
fi
for pkgver in $PINNED; do
    installed "$pkgver" && continue
    cached "$pkgver" >/dev/null || missing="$missing $pkgver"
done
if [ -n "$missing" ]; then
    say "cold package cache: missing$missing in $CACHE; nothing was installed."
    say "warm it on the host (pkg fetch -y -d -o <release or jail root>$CACHE pkg $PINNED) and apply the template again."
    exit 1
fi

if [ -n "$PKG_FILE" ]; then
    # pkg(7) checks the signature its repository config asks for (FreeBSD.conf: fingerprints) in a
    # detached PKG_FILE.sig, which `pkg fetch` does not download.  The file itself was checked by
    # the host's pkg fetch against the signed repository catalogue, so this one offline bootstrap
    # skips pkg(7)'s own check; every later package is added by pkg(8).
    SIGNATURE_TYPE=none pkg add "$PKG_FILE"
    have_pkg8 || { say "pkg add $PKG_FILE did not install pkg(8); nothing else was installed."; exit 1; }
    say "pkg bootstrapped from $PKG_FILE"
else
    say "pkg already installed"
fi

for pkgver in $PINNED; do
    if installed "$pkgver"; then
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
