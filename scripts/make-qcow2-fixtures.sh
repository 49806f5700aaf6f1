#!/usr/bin/env bash
# Regenerates Fixtures/qcow2/ with the real QEMU tools (qemu-img, qemu-io). The images are small
# and committed; tests compare what our driver reads with `qemu-img convert -O raw` of each one.
# Corrupt images are valid images with header/table bytes patched (printf + dd), so no extra tool
# is needed. Run from anywhere: scripts/make-qcow2-fixtures.sh
set -euo pipefail
cd "$(dirname "$0")/.."
out=Fixtures/qcow2
rm -rf "$out"
mkdir -p "$out/chain/sub" "$out/corrupt"
qi() { qemu-img "$@" >/dev/null; }
qio() { qemu-io "$@" >/dev/null; }

# patch FILE OFFSET HEXBYTES — overwrite bytes in place, e.g. patch f 4 00000009
patch() {
    local file=$1 offset=$2 hex=$3 esc=""
    for ((i = 0; i < ${#hex}; i += 2)); do esc+="\\x${hex:i:2}"; done
    printf "$esc" | dd of="$file" bs=1 seek="$offset" conv=notrunc status=none
}

# A raw source mixing text, pseudo-random and zero clusters with a 4000-byte tail, for compression.
mkraw() (
    set +o pipefail  # `yes | head` ends yes with SIGPIPE
    local file=$1 kib=$2
    : >"$file"
    for ((k = 0; k < kib / 64; k++)); do
        case $((k % 3)) in
            0) yes "SwiftNBD qcow2 fixture line $k" | head -c 65536 >>"$file" ;;
            1) head -c 65536 /dev/urandom >>"$file" ;;
            2) head -c 65536 /dev/zero >>"$file" ;;
        esac
    done
    yes tail | head -c 4000 >>"$file"
)

pattern=(-c 'write -P 0xab 0 64k' -c 'write -P 0xcd 1049088 4096' -c 'write -z 2M 64k'
         -c 'write -P 0x11 3M 64k' -c 'write -z 3M 64k' -c 'write -P 0x22 4M 128k' -c 'discard 4M 64k'
         -c 'write -z -u 4259840 64k')

# v3, default 64 KiB clusters: data, zero-plain, zero-alloc (write -z keeps the cluster), discard.
qi create -f qcow2 "$out/v3.qcow2" 6M
qio -f qcow2 "${pattern[@]}" "$out/v3.qcow2"

# v2 (compat=0.10, 16 KiB clusters): no zero flag, zeroing deallocates.
qi create -f qcow2 -o compat=0.10,cluster_size=16k "$out/v2.qcow2" 6M
qio -f qcow2 "${pattern[@]}" "$out/v2.qcow2"

# 512-byte clusters: many L2 tables, refcount table growth is near.
qi create -f qcow2 -o cluster_size=512 "$out/c512.qcow2" 2M
qio -f qcow2 -c 'write -P 0x41 0 1536' -c 'write -P 0x42 70000 3000' -c 'write -z 200k 4k' \
    -c 'write -P 0x43 1M 64k' -c 'write -P 0x44 2096640 512' "$out/c512.qcow2"

# Odd size: the last cluster is only partly inside the disk.
qi create -f qcow2 -o cluster_size=4k "$out/odd-size.qcow2" 1000448
qio -f qcow2 -c 'write -P 0x5a 983040 17408' -c 'write -P 0x5b 0 4096' "$out/odd-size.qcow2"

# Refcount widths 1 and 64 bits.
qi create -f qcow2 -o cluster_size=4k,refcount_bits=1 "$out/refcount1.qcow2" 1M
qio -f qcow2 -c 'write -P 0x61 0 12k' -c 'write -P 0x62 512k 4k' "$out/refcount1.qcow2"
qi create -f qcow2 -o cluster_size=4k,refcount_bits=64 "$out/refcount64.qcow2" 1M
qio -f qcow2 -c 'write -P 0x63 4k 8k' -c 'write -z 64k 4k' "$out/refcount64.qcow2"

# Backing chain: top.qcow2 -> sub/mid.qcow2 -> ../base.raw (names relative to each image).
head -c 393216 /dev/urandom >"$out/chain/base.raw"
truncate -s 512K "$out/chain/base.raw"   # a sparse tail in the raw base
qi create -f qcow2 -o cluster_size=4k -b ../base.raw -F raw "$out/chain/sub/mid.qcow2" 768K
qio -f qcow2 -c 'write -P 0x21 8k 4k' -c 'write -z 16k 8k' -c 'write -P 0x22 600k 8k' "$out/chain/sub/mid.qcow2"
qi create -f qcow2 -o cluster_size=4k -b sub/mid.qcow2 -F qcow2 "$out/chain/top.qcow2" 1M
qio -f qcow2 -c 'write -P 0x31 131584 1024' -c 'write -z 192k 64k' -c 'discard 256k 64k' \
    -c 'write -P 0x32 9k 1k' -c 'write -P 0x33 900k 4k' "$out/chain/top.qcow2"
# v2 overlay over the same raw base.
qi create -f qcow2 -o compat=0.10,cluster_size=4k -b base.raw -F raw "$out/chain/v2-top.qcow2" 512K
qio -f qcow2 -c 'write -P 0x71 4k 2k' "$out/chain/v2-top.qcow2"

# Compressed clusters: deflate (zlib) and zstd, 32 KiB and 4 KiB clusters, and qemu-io write -c.
mkraw "$out/compress-src.raw" 256
qi convert -c -f raw -O qcow2 -o cluster_size=32k "$out/compress-src.raw" "$out/compressed-zlib.qcow2"
qi convert -c -f raw -O qcow2 -o compression_type=zstd,cluster_size=4k "$out/compress-src.raw" "$out/compressed-zstd.qcow2"
qi convert -c -f raw -O qcow2 -o compat=0.10,cluster_size=4k "$out/compress-src.raw" "$out/compressed-v2.qcow2"
rm "$out/compress-src.raw"
qi create -f qcow2 -o cluster_size=4k "$out/compressed-io.qcow2" 256K
qio -f qcow2 -c 'write -c -P 0x77 0 4k' -c 'write -c -P 0x78 8k 4k' -c 'write -P 0x79 9k 512' "$out/compressed-io.qcow2"

# Extended L2 (32 subclusters per cluster), 16 KiB clusters (512-byte subclusters).
qi create -f qcow2 -o extended_l2=on,cluster_size=16k "$out/extended-l2.qcow2" 1M
qio -f qcow2 -c 'write -P 1 0 512' -c 'write -P 2 17408 4k' -c 'write -z 21504 1k' \
    -c 'write -z 64k 16k' -c 'write -P 3 128k 16k' -c 'discard 128k 16k' -c 'write -P 4 200k 1k' "$out/extended-l2.qcow2"
# Extended L2 over a backing file: unallocated subclusters inside allocated clusters read through.
qi create -f qcow2 -o extended_l2=on,cluster_size=16k -b chain/base.raw -F raw "$out/extended-l2-backed.qcow2" 512K
qio -f qcow2 -c 'write -P 5 1024 1024' -c 'write -z 40k 2k' "$out/extended-l2-backed.qcow2"

# Internal snapshot: data written after the snapshot is copied-on-write.
qi create -f qcow2 -o cluster_size=4k "$out/snapshot.qcow2" 1M
qio -f qcow2 -c 'write -P 0xaa 0 64k' "$out/snapshot.qcow2"
qi snapshot -c s1 "$out/snapshot.qcow2"
qio -f qcow2 -c 'write -P 0xbb 4096 4096' -c 'write -P 0xbc 512k 4k' "$out/snapshot.qcow2"

# Lazy refcounts left dirty by a crash (qemu-io abort): stale refcounts, repaired on a read-write open.
qi create -f qcow2 -o cluster_size=4k,lazy_refcounts=on "$out/lazy-dirty.qcow2" 1M
qemu-io -f qcow2 -c 'write -P 0xaa 0 128k' -c abort "$out/lazy-dirty.qcow2" >/dev/null 2>&1 || true

# ---- Deliberately broken images (each must be refused with a clear error, never a crash). ----
base() { qi create -f qcow2 -o cluster_size=4k "$1" 256K; qio -f qcow2 -c 'write -P 0x10 0 8k' "$1"; }
base "$out/corrupt/bad-magic.qcow2";         patch "$out/corrupt/bad-magic.qcow2" 0 514649fc
base "$out/corrupt/bad-version.qcow2";       patch "$out/corrupt/bad-version.qcow2" 4 00000004
base "$out/corrupt/bad-cluster-bits.qcow2";  patch "$out/corrupt/bad-cluster-bits.qcow2" 20 0000001f
base "$out/corrupt/l1-past-eof.qcow2";       patch "$out/corrupt/l1-past-eof.qcow2" 40 0000000040000000
base "$out/corrupt/huge-l1.qcow2";           patch "$out/corrupt/huge-l1.qcow2" 36 7fffffff
# Refcount width overflow: refcount_order 7 would mean 128-bit counters.
base "$out/corrupt/refcount-order.qcow2";    patch "$out/corrupt/refcount-order.qcow2" 96 00000007
base "$out/corrupt/refcount-table-huge.qcow2"; patch "$out/corrupt/refcount-table-huge.qcow2" 56 ffffffff
base "$out/corrupt/unknown-incompatible.qcow2"; patch "$out/corrupt/unknown-incompatible.qcow2" 72 0000000000000100
base "$out/corrupt/corrupt-bit.qcow2";       patch "$out/corrupt/corrupt-bit.qcow2" 72 0000000000000002
base "$out/corrupt/encrypted.qcow2";         patch "$out/corrupt/encrypted.qcow2" 32 00000001
base "$out/corrupt/external-data.qcow2";     patch "$out/corrupt/external-data.qcow2" 72 0000000000000004
# L1 entry 0 points at an L2 table far past the end of the file (opens; reads fail cleanly).
base "$out/corrupt/l2-past-eof.qcow2"
l1=$(od -An -j40 -N8 -tx1 "$out/corrupt/l2-past-eof.qcow2" | tr -d ' \n')
patch "$out/corrupt/l2-past-eof.qcow2" $((16#$l1)) 8000000040000000
# Backing loops: a -> b -> a, and an image that is its own backing file.
qi create -f qcow2 -o cluster_size=4k -u -b loop-b.qcow2 -F qcow2 "$out/corrupt/loop-a.qcow2" 256K
qi create -f qcow2 -o cluster_size=4k -u -b loop-a.qcow2 -F qcow2 "$out/corrupt/loop-b.qcow2" 256K
qi create -f qcow2 -o cluster_size=4k -u -b self-loop.qcow2 -F qcow2 "$out/corrupt/self-loop.qcow2" 256K
# Backing file missing, and one named by a protocol.
qi create -f qcow2 -o cluster_size=4k -u -b does-not-exist.qcow2 -F qcow2 "$out/corrupt/missing-backing.qcow2" 256K
qi create -f qcow2 -o cluster_size=4k -u -b nbd://127.0.0.1:1/x -F raw "$out/corrupt/protocol-backing.qcow2" 256K
# Truncated: only the first 50 bytes of a header.
head -c 50 "$out/v3.qcow2" >"$out/corrupt/truncated-header.qcow2"

qemu-img --version | head -1 >"$out/TOOL-VERSION"
du -sh "$out"
