#!/bin/sh
# agent-jail-bootstrap.sh: prepare a colibri agent jail.  Runs inside the jail as root (the
# colibri/agent Bastillefile calls it).  Idempotent: run it again and it changes nothing.
#
# Packages come from the first-party pkg repository only (issue 13; runbooks/first-party-packages.md).
# colibri writes its config before the template runs: /usr/local/etc/pkg/repos/colibri.conf
# (signature_type "fingerprints", the trusted fingerprints in /usr/local/etc/pkg/fingerprints/colibri)
# and, for a paid tenant, FreeBSD.conf with `FreeBSD: { enabled: no }`.  This script refuses, with
# one line and nothing installed, a repository config that is not signature-checked, a signing
# key that is not trusted or is revoked (pkg(7) and pkg(8) check the signatures themselves), and a
# pinned package that is installed from any other repository.  pkg(8) is bootstrapped by pkg(7)
# from that repository (`pkg bootstrap -r colibri`: Latest/pkg.pkg and its .sig, checked against
# the fingerprints), then `pkg install -r colibri` installs the pinned versions; each one's origin
# is checked after (`pkg query %R`).  Offline, the repository's url is a file:// mirror of it
# in the release (thin jails copy /var from their release): its signed catalogue is verified on
# every run, exactly as over https.  A mirror missing a pinned package is refused up front.
set -eu

PINNED="${COLIBRI_PINNED_PACKAGES:-python311-3.11.13}"
REPO=colibri
REPO_CONF=/usr/local/etc/pkg/repos/$REPO.conf
FINGERPRINTS=/usr/local/etc/pkg/fingerprints/$REPO
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
refuse() { say "$*; nothing was installed."; exit 1; }
# after pkg(8) itself is in: none of the pinned packages is installed when this refuses
refuse_pinned() { say "$*; no pinned package was installed."; exit 1; }

# pkg -N: "a reliable test for whether a system is configured to use pkg" (pkg(7)); it never
# bootstraps, and without pkg(8) pkg info would only print pkg(7)'s bootstrap prompt.
have_pkg8() { pkg -N >/dev/null 2>&1; }
# The repository a package was installed from (pkg-query(8) %R; "unknown-repository" for pkg add).
origin() { pkg query '%R' "$1" 2>/dev/null; }
# One field of a repository as pkg(8) itself resolved the config files (pkg -vv, src/utils.c
# print_repository): what counts is the effective value, whatever file set it.
repo_field() {
    pkg -vv 2>/dev/null | sed -n "/^  $REPO: { *\$/,/^  }/s/^    $1 *: \"*\([^\",]*\)\"*,*\$/\1/p" | head -n 1
}

# 1. the first-party repository's config, as colibri wrote it
[ -f "$REPO_CONF" ] || refuse "no $REPO_CONF (colibri writes it before the template runs)"
grep -Eq '^[[:space:]]*signature_type[[:space:]]*[:=][[:space:]]*"?fingerprints"?' "$REPO_CONF" ||
    refuse "$REPO_CONF is not signature-checked (signature_type: \"fingerprints\")"
ls "$FINGERPRINTS"/trusted/* >/dev/null 2>&1 || refuse "no trusted fingerprint in $FINGERPRINTS/trusted"
url="$(sed -n 's/^[[:space:]]*url[[:space:]]*[:=][[:space:]]*"\([^"]*\)".*/\1/p' "$REPO_CONF" | head -n 1)"
[ -n "$url" ] || refuse "$REPO_CONF has no url"

# 2. an offline mirror (file://) must hold pkg and every pinned package: refused before anything
missing=""
case "$url" in
file://*)
    mirror="${url#file://}"
    [ -f "$mirror/packagesite.pkg" ] || missing="$missing packagesite.pkg"
    have_pkg8 || [ -f "$mirror/Latest/pkg.pkg" ] || missing="$missing pkg"
    for pkgver in $PINNED; do
        [ -f "$mirror/All/$pkgver.pkg" ] || missing="$missing $pkgver"
    done
    if [ -n "$missing" ]; then
        say "cold package cache: missing$missing in $mirror; nothing was installed."
        say "mirror the first-party repository there (runbooks/first-party-packages.md) and apply the template again."
        exit 1
    fi
    ;;
esac

# 3. pkg(8), bootstrapped by pkg(7) from the first-party repository, its signature checked
if have_pkg8; then
    say "pkg already installed"
else
    out="$(ASSUME_ALWAYS_YES=yes pkg bootstrap -y -r "$REPO" 2>&1)" || true
    have_pkg8 || refuse "pkg(7) could not bootstrap pkg from $REPO: $(printf '%s\n' "$out" | grep -v '^Bootstrapping' | tr '\n' ' ' | cut -c1-240)"
    say "pkg bootstrapped from $REPO"
fi
# (pkg itself reports "unknown-repository": pkg(7) installs it with `pkg-static add`; its signature
# was what pkg(7) checked, against the same fingerprints.)

# 4. the effective config (every file pkg reads, in its order) keeps the repository signature-checked
[ "$(repo_field signature_type)" = "FINGERPRINTS" ] ||
    refuse_pinned "the $REPO repository is not signature-checked once pkg reads every config file (signature_type $(repo_field signature_type))"
[ "$(repo_field fingerprints)" = "$FINGERPRINTS" ] ||
    refuse_pinned "the $REPO repository's fingerprints are not $FINGERPRINTS once pkg reads every config file"

# 5. the pinned packages, from that repository only (-r: no other repository is consulted)
need=""
for pkgver in $PINNED; do
    if pkg info -e "$pkgver" >/dev/null 2>&1; then
        from="$(origin "${pkgver%-*}")"; from="${from:-no repository}"
        [ "$from" = "$REPO" ] || refuse_pinned "$pkgver is installed from $from, not from the $REPO repository"
        say "$pkgver already installed"
    else
        need="$need $pkgver"
    fi
done
if [ -n "$need" ]; then
    # shellcheck disable=SC2086  # word splitting of the pinned list is intended
    out="$(pkg install -y -r "$REPO" $need 2>&1)" || {
        refuse_pinned "pkg install -r $REPO$need failed: $(printf '%s\n' "$out" | grep -E '^pkg: |Unable|Error' | tr '\n' ' ' | cut -c1-240)"
    }
    for pkgver in $need; do
        from="$(origin "${pkgver%-*}")"; from="${from:-no repository}"
        [ "$from" = "$REPO" ] || { say "$pkgver came from $from, not from the $REPO repository; refusing."; exit 1; }
        say "$pkgver installed from $REPO"
    done
fi

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
