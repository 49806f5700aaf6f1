#!/usr/bin/env bash
# Installs what SwiftNBD needs on Debian 12: the C libraries it links (GnuTLS, zlib, zstd)
# and, with --peers, the real NBD peers the interop tests and benchmarks drive: Debian 12's
# own (QEMU 7.2, libnbd 1.14, nbdkit …) and today's QEMU from bookworm-backports, unpacked
# beside them (scripts/lib/install-qemu-backports.sh). Installs only what is missing, so a
# second run costs nothing.
set -euo pipefail

build_pkgs=(pkg-config libgnutls28-dev zlib1g-dev libzstd-dev)
client_pkgs=(qemu-utils libnbd-bin)
# gcc, libc6-dev: the static RAM dirtier of the Linux migration guest (scripts/build-linux-guest.sh).
peer_pkgs=("${client_pkgs[@]}" qemu-system-x86 nbdkit libnbd-dev python3-libnbd gnutls-bin fio prometheus systemd zsh fish strace man-db gcc libc6-dev)

want=("${build_pkgs[@]}")
case "${1:-}" in
    --peers) want+=("${peer_pkgs[@]}") ;;    # everything the test suite and benchmarks drive
    --clients) want+=("${client_pkgs[@]}") ;; # qemu-img and nbdinfo, to try the demo
esac

missing=()
for p in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [[ ${#missing[@]} -gt 0 ]]; then
    sudo=""
    [[ $(id -u) -ne 0 ]] && sudo="sudo"
    echo "Installing: ${missing[*]}" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [[ ${1:-} == --peers ]]; then
    "$(dirname "$0")/lib/install-qemu-backports.sh"
fi
