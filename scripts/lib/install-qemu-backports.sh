#!/usr/bin/env bash
# Installs today's QEMU (10.x from Debian's bookworm-backports suite) beside Debian 12's QEMU
# 7.2, as the interop suite's second peer generation (README, "Interop peers").
#
# The packages are fetched with a private apt configuration (its own source list, lists and
# cache under $cache; the Debian archive keyring checks their signatures), unpacked into
# $prefix, and never registered with dpkg: the system's QEMU 7.2 and its apt sources stay as
# they were. The shared libraries QEMU 10 links are installed from bookworm itself. Wrappers in
# $prefix/bin give each binary its own firmware (-L) and module directory, so QEMU 10 never
# loads 7.2's files. A second run with the same version installed does nothing.
#
# usage: scripts/lib/install-qemu-backports.sh [PREFIX]   (default /opt/swiftnbd-peers/qemu-backports)
set -euo pipefail
prefix=${1:-${SWIFTNBD_QEMU_BACKPORTS:-/opt/swiftnbd-peers/qemu-backports}}
packages=(qemu-utils qemu-system-x86 qemu-system-common qemu-system-data seabios)
binaries=(qemu-img qemu-io qemu-nbd qemu-storage-daemon qemu-system-x86_64)
mirror=${SWIFTNBD_DEBIAN_MIRROR:-http://deb.debian.org/debian}
cache=/var/cache/swiftnbd-peers/apt
sudo=""
[[ $(id -u) -ne 0 ]] && sudo="sudo"

private_apt() { # apt-get or apt-cache, then its arguments
    local tool=$1; shift
    $sudo "$tool" -q -o Dir::Etc::SourceList="$cache/backports.sources" -o Dir::Etc::SourceParts=/dev/null \
        -o Dir::State::Lists="$cache/lists" -o Dir::Cache="$cache/cache" -o Debug::NoLocking=1 -o APT::Sandbox::User=root "$@"
}

$sudo mkdir -p "$cache/lists/partial" "$cache/cache/archives/partial" "$cache/debs"
printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
    "$mirror" | $sudo tee "$cache/backports.sources" >/dev/null

# Refresh the index at most once a day; it decides which version is current.
if [[ -z $(find "$cache/lists" -maxdepth 1 -name '*_InRelease' -mtime -1 2>/dev/null) ]]; then
    private_apt apt-get update >/dev/null
fi
version=$(private_apt apt-cache show qemu-utils/bookworm-backports 2>/dev/null | awk '/^Version:/ {print $2; exit}')
[[ -n $version ]] || { echo "bookworm-backports has no qemu-utils (mirror $mirror)" >&2; exit 1; }
if [[ -f $prefix/VERSION && $(cat "$prefix/VERSION") == "$version" ]]; then
    exit 0
fi

echo "Installing QEMU $version from bookworm-backports into $prefix" >&2
(cd "$cache/debs" && $sudo rm -f ./*.deb && private_apt apt-get download "${packages[@]/%//bookworm-backports}" >/dev/null)
staging=$($sudo mktemp -d "${prefix%/*}/.qemu-backports.XXXXXX" 2>/dev/null || { $sudo mkdir -p "${prefix%/*}"; $sudo mktemp -d "${prefix%/*}/.qemu-backports.XXXXXX"; })
for deb in "$cache"/debs/*.deb; do $sudo dpkg-deb -x "$deb" "$staging/root"; done

# Runtime libraries from bookworm: every dependency of the unpacked packages that is not one of
# them, QEMU itself or firmware (first alternative of each).
needed=$(for deb in "$cache"/debs/*.deb; do dpkg-deb -f "$deb" Depends; done | tr ',' '\n' |
    sed -e 's/|.*//' -e 's/(.*//' -e 's/[[:space:]]//g' | grep -v -E '^(qemu-|seabios|ipxe-qemu|$)' | sort -u)
missing=()
for p in $needed; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [[ ${#missing[@]} -gt 0 ]]; then
    echo "Installing QEMU $version's libraries: ${missing[*]}" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

$sudo mkdir -p "$staging/bin"
for b in "${binaries[@]}"; do
    firmware=""
    [[ $b == qemu-system-* ]] && firmware='-L "$root/usr/share/qemu" -L "$root/usr/share/seabios" '
    $sudo tee "$staging/bin/$b" >/dev/null <<EOF
#!/bin/sh
# QEMU $version from bookworm-backports (scripts/lib/install-qemu-backports.sh)
root=$prefix/root
QEMU_MODULE_DIR="\$root/usr/lib/x86_64-linux-gnu/qemu" exec "\$root/usr/bin/$b" $firmware"\$@"
EOF
    $sudo chmod 755 "$staging/bin/$b"
done
echo "$version" | $sudo tee "$staging/VERSION" >/dev/null
$sudo rm -rf "$prefix"
$sudo mv "$staging" "$prefix"
"$prefix/bin/qemu-img" --version | head -1 >&2
