#!/usr/bin/env bash
# qcow2 seeds: small images made with qemu-img/qemu-io (512-byte clusters where the feature
# allows, so a whole image with its metadata fits in a few KiB), and the first 64 KiB of each
# image in Fixtures/qcow2 (header, extensions, and the first tables where they fit). Backing
# names are base.raw / base.qcow2, the files the harness's sandbox directory holds.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=Fuzz/corpus/qcow2
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
truncate -s 64K base.raw
qemu-img create -q -f qcow2 -o cluster_size=512 base.qcow2 1M
mk() { # name, create options…, then qemu-io commands after --
    local name=$1; shift
    local opts=()
    while [[ $# -gt 0 && $1 != -- ]]; do opts+=("$1"); shift; done
    [[ ${1:-} == -- ]] && shift
    qemu-img create -q -f qcow2 "${opts[@]}" "$name.qcow2" 1M
    local cmds=()
    for c in "$@"; do cmds+=(-c "$c"); done
    [[ ${#cmds[@]} -gt 0 ]] && qemu-io -f qcow2 "${cmds[@]}" "$name.qcow2" >/dev/null
    cp "$name.qcow2" "$OLDPWD/$out/gen-$name"
}
mk empty-c512 -o cluster_size=512
mk data-c512 -o cluster_size=512 -- 'write -P 1 0 4k' 'write -P 2 600k 1k' 'write -z 8k 4k' 'discard 0 512'
mk v2-c512 -o cluster_size=512,compat=0.10 -- 'write -P 3 0 2k'
mk refcount1 -o cluster_size=512,refcount_bits=1 -- 'write -P 4 1k 1k'
mk refcount64 -o cluster_size=512,refcount_bits=64 -- 'write -P 5 0 1k'
mk compressed -o cluster_size=512 -- 'write -c -P 6 0 512' 'write -c -P 0 512 512'
mk zstd -o cluster_size=4096,compression_type=zstd -- 'write -c -P 7 0 4k'
mk backing-raw -o cluster_size=512,backing_file=base.raw,backing_fmt=raw -- 'write -P 8 512 512'
mk backing-qcow2 -o cluster_size=512,backing_file=base.qcow2,backing_fmt=qcow2 -- 'write -P 9 0 512'
mk backing-probe -o cluster_size=512,backing_file=base.qcow2 -F qcow2
mk lazy -o cluster_size=512,lazy_refcounts=on -- 'write -P 10 0 1k'
# Persistent dirty bitmaps (the bitmaps extension, directory, tables and data clusters): b0
# enabled at 512-byte granularity, b1 disabled, both dirtied by qemu-io first.
qemu-img create -q -f qcow2 -o cluster_size=512 bitmaps-c512.qcow2 1M
qemu-img bitmap --add --granularity 512 bitmaps-c512.qcow2 b0
qemu-img bitmap --add bitmaps-c512.qcow2 b1
qemu-io -f qcow2 -c 'write -P 6 0 3k' -c 'write -P 7 700k 1k' bitmaps-c512.qcow2 >/dev/null
qemu-img bitmap --disable bitmaps-c512.qcow2 b1
cp bitmaps-c512.qcow2 "$OLDPWD/$out/gen-bitmaps-c512"
mk extl2 -o cluster_size=16k,extended_l2=on -- 'write -P 11 0 2k' 'write -z 4k 2k' 'write -P 12 20k 1k'
mk extl2-backing -o cluster_size=16k,extended_l2=on,backing_file=base.raw,backing_fmt=raw -- 'write -P 13 2k 2k'
cd "$OLDPWD"
for f in Fixtures/qcow2/*.qcow2 Fixtures/qcow2/corrupt/*.qcow2; do
    head -c 65536 "$f" > "$out/fixture-$(basename "$f" .qcow2)"
done
ls "$out" | wc -l | sed 's/^/qcow2 seeds: /'
