#!/usr/bin/env bash
# Builds the .deb with `cargo deb` (or takes one: check-deb.sh PATH.deb) and checks what it
# holds, without installing it: dpkg-deb -c/-f/-e/-x into a temp root. Prints "package OK"
# or exits non-zero naming the first thing wrong. CARGO_DEB_ARGS adds flags to `cargo deb`
# (CI: --fast, a quicker compression; the contents are the same).
# Needs dpkg-deb; cargo-deb unless a .deb is given (cargo install cargo-deb --locked).
# Optional: systemd-analyze (the unit and the FUSE drop-in are verified), readelf.
set -euo pipefail
given=${1:+$(realpath -m -- "$1")}
cd "$(dirname "$0")/.."

fail() {
    echo "check-deb: FAIL: $*" >&2
    exit 1
}
note() { echo "check-deb: $*"; }

started=$SECONDS
command -v dpkg-deb >/dev/null || fail "dpkg-deb not found (apt-get install dpkg-dev)"

if [ -n "$given" ]; then
    deb=$given
else
    cargo deb --version >/dev/null 2>&1 || fail "cargo-deb not found (cargo install cargo-deb --locked)"
    note "building with cargo deb"
    # shellcheck disable=SC2086 # CARGO_DEB_ARGS is a list of flags
    out=$(cargo deb ${CARGO_DEB_ARGS:-}) || fail "cargo deb failed"
    # It prints the path of each package it made: the .deb and the -dbgsym .ddeb.
    deb=$(grep '\.deb$' <<<"$out" | tail -n 1)
    [ -n "$deb" ] || fail "cargo deb printed no .deb path: $out"
fi
[ -f "$deb" ] || fail "$deb: no such file"
note "checking $deb ($(du -h "$deb" | cut -f1))"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# --- control fields
field() { dpkg-deb -f "$deb" "$1"; }
[ "$(field Package)" = torrentdrive ] || fail "Package is '$(field Package)', not torrentdrive"
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
case "$(field Version)" in
    "$version"-*) ;;
    *) fail "Version '$(field Version)' is not $version-<revision> (Cargo.toml)" ;;
esac
[ "$(field Architecture)" = "$(dpkg --print-architecture)" ] ||
    fail "Architecture '$(field Architecture)' is not this machine's"
depends=$(field Depends)
for dep in libc6 adduser; do
    grep -qw "$dep" <<<"$depends" || fail "Depends '$depends' lacks $dep"
done
grep -qw fuse3 <<<"$(field Recommends)" || fail "Recommends lacks fuse3"
[ -n "$(field Maintainer)" ] || fail "no Maintainer"
[ -n "$(field Description)" ] || fail "no Description"

# --- file list (dpkg-deb -c): these files with these modes, these folders, nothing else
dpkg-deb -c "$deb" | awk '$NF != "./" {print $1, $NF}' | sed 's| \./| |; s|/$||' | sort >"$tmp/list"
sort >"$tmp/expected" <<'EOF'
-rwxr-xr-x usr/bin/torrentdrive
-rw-r--r-- lib/systemd/system/torrentdrive.service
-rw-r--r-- etc/torrentdrive/config.toml
-rw-r--r-- usr/share/doc/torrentdrive/fuse.conf
-rw-r--r-- usr/share/doc/torrentdrive/README.md
-rw-r--r-- usr/share/doc/torrentdrive/copyright
drwxr-xr-x usr
drwxr-xr-x usr/bin
drwxr-xr-x usr/share
drwxr-xr-x usr/share/doc
drwxr-xr-x usr/share/doc/torrentdrive
drwxr-xr-x lib
drwxr-xr-x lib/systemd
drwxr-xr-x lib/systemd/system
drwxr-xr-x etc
drwxr-xr-x etc/torrentdrive
EOF
if ! diff "$tmp/expected" "$tmp/list" >"$tmp/diff"; then
    cat "$tmp/diff" >&2
    fail "the files in the package differ from the expected list above (<: expected, >: packaged)"
fi

# --- control archive: conffiles and maintainer scripts
dpkg-deb -e "$deb" "$tmp/control"
grep -qx /etc/torrentdrive/config.toml "$tmp/control/conffiles" ||
    fail "/etc/torrentdrive/config.toml is not a conffile"
for script in postinst prerm postrm; do
    f=$tmp/control/$script
    [ -f "$f" ] || fail "maintainer script $script missing"
    [ -x "$f" ] || fail "maintainer script $script not executable"
    head -n 1 "$f" | grep -qx '#!/bin/sh' || fail "$script does not start with #!/bin/sh"
    sh -n "$f" || fail "$script: sh syntax error"
    if grep -q '#DEBHELPER#' "$f"; then fail "$script still holds #DEBHELPER#"; fi
done
grep -q 'adduser --system' "$tmp/control/postinst" || fail "postinst does not create the system user"

# --- contents (dpkg-deb -x into a temp root)
root=$tmp/root
dpkg-deb -x "$deb" "$root"
bin=$root/usr/bin/torrentdrive
got=$("$bin" --version) || fail "usr/bin/torrentdrive --version failed"
[ "$got" = "torrentdrive $version" ] || fail "--version printed '$got', not 'torrentdrive $version'"
if command -v readelf >/dev/null; then
    if readelf -S "$bin" | grep -q '\.debug_info'; then
        fail "usr/bin/torrentdrive still has its debug info (it belongs in the -dbgsym package)"
    fi
else
    note "readelf not found: not checking that the binary is stripped"
fi

# The shipped config is the binary's own commented example, and the binary accepts it.
"$bin" config example >"$tmp/example.toml" || fail "torrentdrive config example failed"
diff -u "$tmp/example.toml" "$root/etc/torrentdrive/config.toml" >&2 ||
    fail "etc/torrentdrive/config.toml differs from \`torrentdrive config example\` (packaging/config.toml is stale)"

unit=$root/lib/systemd/system/torrentdrive.service
grep -qx 'ExecStart=/usr/bin/torrentdrive serve' "$unit" || fail "the unit does not start /usr/bin/torrentdrive serve"
grep -qx 'User=torrentdrive' "$unit" || fail "the unit does not run as the user torrentdrive"
grep -qx 'StateDirectory=torrentdrive' "$unit" || fail "the unit has no StateDirectory=torrentdrive"
grep -qx 'Environment=TORRENTDRIVE_CONFIG=/etc/torrentdrive/config.toml' "$unit" ||
    fail "the unit does not point TORRENTDRIVE_CONFIG at the conffile"
if grep -q '^DynamicUser=yes' "$unit"; then fail "the unit uses DynamicUser"; fi

# systemd-analyze verify checks that ExecStart= exists, so it runs on a copy of the unit
# that starts the extracted binary; the FUSE drop-in is verified on top of it (as
# torrentdrive.service.d/ beside the unit). Any message, even a warning, is a failure.
if command -v systemd-analyze >/dev/null; then
    mkdir -p "$tmp/verify/torrentdrive.service.d"
    sed "s|/usr/bin/torrentdrive|$bin|" "$unit" >"$tmp/verify/torrentdrive.service"
    for variant in stock fuse; do
        if [ $variant = fuse ]; then
            cp "$root/usr/share/doc/torrentdrive/fuse.conf" "$tmp/verify/torrentdrive.service.d/"
        fi
        if ! systemd-analyze verify "$tmp/verify/torrentdrive.service" >"$tmp/verify.out" 2>&1 ||
            [ -s "$tmp/verify.out" ]; then
            cat "$tmp/verify.out" >&2
            fail "systemd-analyze verify of the unit ($variant) reported the above"
        fi
        exposure=$(systemd-analyze security --offline=true "$tmp/verify/torrentdrive.service" 2>/dev/null |
            sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p') || true
        note "systemd-analyze verify: unit ($variant) OK${exposure:+, exposure $exposure}"
    done
else
    note "systemd-analyze not found: skipping the unit verification"
fi

note "took $((SECONDS - started)) s"
echo "package OK"
