#!/usr/bin/env bash
# Builds the Linux guest of the migration tests and benchmarks: Debian's cloud kernel and an
# initramfs with busybox and a static RAM dirtier (Fixtures/migration/linux-guest/). The
# packages come from the Debian archive with `apt-get download`; nothing is committed.
#
#   scripts/build-linux-guest.sh [CACHE_DIR]
#
# Prints the directory holding `vmlinuz` and `initramfs.cpio.gz`. CACHE_DIR defaults to
# $SWIFTNBD_LINUX_GUEST_DIR or ~/.cache/swiftnbd/linux-guest; a build whose inputs did not
# change is reused. Boot: -kernel vmlinuz -initrd initramfs.cpio.gz
#   -append "console=ttyS0 quiet lmig.mib=128 lmig.rate=64"  (MiB working set, MiB/s)
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
src=$here/Fixtures/migration/linux-guest
cache=${1:-${SWIFTNBD_LINUX_GUEST_DIR:-$HOME/.cache/swiftnbd/linux-guest}}
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)

kernel_package=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
[ -n "$kernel_package" ] || { echo "build-linux-guest: cannot resolve linux-image-cloud-amd64 (apt-get update?)" >&2; exit 1; }
kernel_version=$(apt-cache policy "$kernel_package" | awk '/Candidate:/ { print $2 }')
busybox_version=$(apt-cache policy busybox-static | awk '/Candidate:/ { print $2 }')
key=$( (echo "$kernel_package $kernel_version $busybox_version"; cat "$src/dirtier.c" "$src/init" "$0") | sha256sum | cut -c1-16)

if [ -f "$cache/$key.done" ] && [ -f "$cache/vmlinuz" ] && [ -f "$cache/initramfs.cpio.gz" ]; then
    echo "$cache"
    exit 0
fi

work=$(mktemp -d "$cache/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get download -q "$kernel_package" busybox-static >/dev/null 2>&1) \
    || { echo "build-linux-guest: apt-get download $kernel_package busybox-static failed" >&2; exit 1; }
dpkg-deb -x "$work"/linux-image-*.deb "$work/kernel"
dpkg-deb -x "$work"/busybox-static_*.deb "$work/busybox"

root=$work/root
mkdir -p "$root"/{bin,dev,proc,sys,lib/modules}
cp "$work/busybox/bin/busybox" "$root/bin/busybox"
for module in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_blk; do
    found=$(find "$work/kernel/lib/modules" -name "$module.ko*" | head -n1)
    [ -n "$found" ] || { echo "build-linux-guest: module $module not in $kernel_package" >&2; exit 1; }
    case "$found" in
        *.ko.xz) xz -dc "$found" > "$root/lib/modules/$module.ko" ;;
        *.ko.zst) zstd -qdc "$found" > "$root/lib/modules/$module.ko" ;;
        *) cp "$found" "$root/lib/modules/$module.ko" ;;
    esac
done
gcc -O2 -static -o "$root/dirtier" "$src/dirtier.c"
install -m 0755 "$src/init" "$root/init"
# busybox's own cpio writes the newc archive, so the build needs no cpio package.
(cd "$root" && find . | sort | "$root/bin/busybox" cpio -o -H newc 2>/dev/null | gzip -9 > "$work/initramfs.cpio.gz")
cp "$work"/kernel/boot/vmlinuz-* "$work/vmlinuz"
mv "$work/vmlinuz" "$cache/vmlinuz"
mv "$work/initramfs.cpio.gz" "$cache/initramfs.cpio.gz"
rm -f "$cache"/*.done
echo "$kernel_package $kernel_version, busybox-static $busybox_version" > "$cache/$key.done"
echo "$cache"
