#!/bin/sh
# Rebuilds Fixtures/migration/boot-sector.bin (the migration test guest) from its source with
# GNU as and objcopy only. The result must be exactly 512 bytes ending in 55 AA.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
src="$root/Fixtures/migration/boot-sector.S"
out="$root/Fixtures/migration/boot-sector.bin"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# as does not run the C preprocessor; strip /* */ comments is not needed: GNU as accepts them.
as --32 -o "$work/boot.o" "$src"
objcopy -O binary -j .text "$work/boot.o" "$work/boot.bin"
size=$(wc -c < "$work/boot.bin")
if [ "$size" -ne 512 ]; then echo "boot sector is $size bytes, expected 512" >&2; exit 1; fi
if [ "$(od -An -tx1 -j510 -N2 "$work/boot.bin" | tr -d ' ')" != "55aa" ]; then
    echo "boot sector lacks the 55 AA signature" >&2; exit 1
fi
mv "$work/boot.bin" "$out"
echo "wrote $out"
