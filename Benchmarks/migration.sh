#!/usr/bin/env bash
# Live-migration benchmark (arrangements B1 and A, docs/migration.md §2): the boot-sector guest
# keeps writing while `swiftnbd migrate` mirrors its disk over NBD+TLS into
#   swiftnbd           (the in-process export of `swiftnbd migrate`, its default),
#   qemu-nbd           (reference external server),
#   destination-qemu   (arrangement A: the destination QEMU's own NBD server),
# then migrates RAM over TLS. Prints the median mirror throughput and downtime per target and
# disk size, and each target's throughput relative to swiftnbd. Every run is checked with
# `qemu-img compare` (the destination is left paused for that, then both VMs are stopped).
#
# usage: Benchmarks/migration.sh [runs (default 5)] [sizes (default "256M 1G")] [targets]
#   SWIFTNBD=path overrides the binary (default: release build).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
sizes=${2:-"256M 1G"}
targets=${3:-"swiftnbd qemu-nbd destination-qemu"}

if [ -z "${SWIFTNBD:-}" ]; then
    swift build -c release --product swiftnbd >&2
    SWIFTNBD="$(swift build -c release --show-bin-path)/swiftnbd"
fi
boot=Fixtures/migration/boot-sector.bin
source scripts/lib/vm-workdir.sh
make_workdir swiftnbd-migration-bench

# Test PKI in QEMU's layout (server names localhost, 127.0.0.1, ::1), made by the
# binary under test: its certificates load in QEMU 7.2 and 10 as server and client.
pki=$work/pki
"$SWIFTNBD" certs create "$pki" --hostname localhost --ip 127.0.0.1 --ip ::1 --days 2 >/dev/null

vm() { # name disk debugcon-log extra-args...; the VM's PID is left in $launched
    local name=$1 disk=$2 log=$3; shift 3
    local endpoint=client verify=""
    if [ "$name" = dst ]; then endpoint=server; verify=",verify-peer=on"; fi
    launch "$work/$name.out" qemu-system-x86_64 -name "$name" -machine pc "${accel[@]}" -m 128 -nodefaults -no-user-config -display none \
        -object "tls-creds-x509,id=tls0,dir=$pki,endpoint=$endpoint$verify" \
        -blockdev "driver=file,filename=$disk,node-name=vda-storage,cache.direct=off" \
        -blockdev driver=raw,file=vda-storage,node-name=vda-format \
        -device virtio-blk-pci,drive=vda-format,id=vda,bootindex=1 \
        -chardev "file,id=dbg,path=$log" -device isa-debugcon,iobase=0x402,chardev=dbg \
        -qmp "unix:$work/$name.qmp,server=on,wait=off" "$@" 2>/dev/null
}

results=$work/results.jsonl
: > "$results"
for size in $sizes; do
    # Incompressible data so the mirror really copies every byte; boot sector in sector 0.
    template=$work/src-$size.raw
    qemu-img create -q -f raw "$template" "$size"
    bytes=$(stat -c %s "$template")
    head -c "$bytes" /dev/urandom > "$template"
    dd if="$boot" of="$template" conv=notrunc status=none
    for run in $(seq 1 "$runs"); do
        for target in $targets; do
            src=$work/src.raw dst=$work/dst.raw
            cp "$template" "$src"
            qemu-img create -q -f raw "$dst" "$size"
            # Start each run with no dirty page cache: on this kind of host, writing back the
            # previous run's GiB throttles the next one's writes (seen: 1 GiB at 1 s, the
            # second GiB at 7 s), which would measure the disk instead of the NBD path.
            sync
            rm -f "$work"/*.qmp "$work"/*-dbg.log
            vm dst "$dst" "$work/dst-dbg.log" -S -incoming defer; dpid=$launched
            vm src "$src" "$work/src-dbg.log"; spid=$launched
            for _ in $(seq 1 300); do grep -q BMIG "$work/src-dbg.log" 2>/dev/null && break; sleep 0.1; done
            # Let the guest write for a moment so the mirror has live writes to track.
            sleep 1
            if out=$("$SWIFTNBD" migrate --source-qmp "$work/src.qmp" --destination-qmp "$work/dst.qmp" \
                    --disk "vda-format=$dst" --tls-certificates "$pki" --source-tls-creds tls0 --destination-tls-creds tls0 \
                    --export-server "$target" --no-resume --timeout 120 --json 2>"$work/migrate.err"); then
                if qemu-img compare -U -q -f raw -F raw "$src" "$dst"; then same=true; else same=false; fi
            else
                same=false
                echo "run failed ($size $target): $out $(cat "$work/migrate.err")" >&2
            fi
            echo "{\"size\": \"$size\", \"target\": \"$target\", \"identical\": $same, \"result\": ${out:-null}}" >> "$results"
            stop_launched "$spid" "$dpid"
            pids=()
        done
    done
done

python3 - "$results" "$runs" <<'PY'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
runs = sys.argv[2]
print(f"# swiftnbd migrate benchmark: median of {runs} runs, TLS on NBD and migration streams, writing guest")
print("| disk | mirror target | ok/runs | mirror MiB/s | mirror s | downtime ms | RAM phase s | total s | throughput vs swiftnbd |")
print("|---|---|---|---|---|---|---|---|---|")
by = {}
for r in rows:
    by.setdefault((r["size"], r["target"]), []).append(r)
for size in dict.fromkeys(r["size"] for r in rows):
    base = None
    for target in dict.fromkeys(r["target"] for r in rows):
        rs = by.get((size, target), [])
        good = [r["result"] for r in rs if r["identical"] and r["result"] and r["result"].get("status") == "completed"]
        if not good:
            print(f"| {size} | {target} | 0/{len(rs)} | - | - | - | - | - | - |"); continue
        med = lambda k: statistics.median(g[k] for g in good if g.get(k) is not None)
        mibs = med("mirror-bytes-per-second") / 1048576
        if target == "swiftnbd": base = mibs
        ratio = f"{mibs / base:.2f}x" if base else "-"
        print(f"| {size} | {target} | {len(good)}/{len(rs)} | {mibs:.0f} | {med('mirror-seconds'):.2f} | {med('downtime-ms'):.0f} | "
              f"{med('ram-migration-seconds'):.3f} | {med('total-seconds'):.2f} | {ratio} |")
PY
