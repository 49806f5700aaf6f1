#!/usr/bin/env bash
# Incremental-backup benchmark (issue 10): a VM (QEMU paused, so nothing else writes) with a
# qcow2 disk full of incompressible data is backed up by `swiftnbd backup` over QEMU's NBD
# server with TLS: once in full (the whole disk through the same path, i.e. `swiftnbd copy` of
# the whole disk), then incrementally after writing P % of the disk in 64 KiB blocks at random
# places through QEMU itself (HMP qemu-io on the guest device, so the checkpoint bitmap sees
# them). Prints bytes moved against the dirty data and time against a plain `swiftnbd copy` of
# the whole disk (from qemu-nbd over TLS), and checks that the last chain restores identical to
# the disk (qemu-img compare).
#
# usage: Benchmarks/backup.sh [size (default 4G)] [percentages (default "1 10")]
#   SWIFTNBD=path overrides the binary (default: release build).
set -euo pipefail
cd "$(dirname "$0")/.."
size=${1:-4G}
percents=${2:-"1 10"}

if [ -z "${SWIFTNBD:-}" ]; then
    swift build -c release --product swiftnbd >&2
    SWIFTNBD="$(swift build -c release --show-bin-path)/swiftnbd"
fi
source scripts/lib/vm-workdir.sh
make_workdir swiftnbd-backup-bench

# Test PKI in QEMU's layout (server names localhost, 127.0.0.1, ::1), made by the
# binary under test: its certificates load in QEMU 7.2 and 10 as server and client.
pki=$work/pki
"$SWIFTNBD" certs create "$pki" --hostname localhost --ip 127.0.0.1 --ip ::1 --days 2 >/dev/null

disk=$work/disk.qcow2
raw=$work/disk.raw
qemu-img create -q -f raw "$raw" "$size"
bytes=$(stat -c %s "$raw")
head -c "$bytes" /dev/urandom > "$raw"
qemu-img convert -q -f raw -O qcow2 "$raw" "$disk"
rm -f "$raw"
sync

launch "$work/qemu.out" qemu-system-x86_64 -name bench -machine pc "${accel[@]}" -m 128 -nodefaults -no-user-config -display none -S \
    -blockdev "driver=file,filename=$disk,node-name=vda-storage,cache.direct=off" \
    -blockdev driver=qcow2,file=vda-storage,node-name=vda-format \
    -device virtio-blk-pci,drive=vda-format,id=vda \
    -qmp "unix:$work/bench.qmp,server=on,wait=off" -qmp "unix:$work/writer.qmp,server=on,wait=off"
qpid=$launched
for _ in $(seq 1 100); do [ -S "$work/bench.qmp" ] && [ -S "$work/writer.qmp" ] && break; sleep 0.1; done

backups=$work/backups
results=$work/results.jsonl
: > "$results"
backup() { # label dirty-bytes
    sync
    local out
    out=$("$SWIFTNBD" backup --qmp "$work/bench.qmp" --disk vda-format --tls-certificates "$pki" --json "$backups" |
        python3 -c 'import json, sys; print(json.dumps(json.load(sys.stdin)))')
    echo "{\"label\": \"$1\", \"dirty\": $2, \"report\": $out}" >> "$results"
}
dirty() { # percent: writes that share of the disk in distinct random 64 KiB blocks via HMP qemu-io
    python3 - "$work/writer.qmp" "$bytes" "$1" <<'PY'
import json, random, socket, sys
path, size, percent = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
s = socket.socket(socket.AF_UNIX); s.connect(path); f = s.makefile("rw")
def cmd(name, **args):
    f.write(json.dumps({"execute": name, "arguments": args} if args else {"execute": name}) + "\n"); f.flush()
    while True:
        reply = json.loads(f.readline())
        if "event" in reply: continue
        if "error" in reply: sys.exit(f"{name}: {reply['error']}")
        return reply["return"]
f.readline(); cmd("qmp_capabilities")
blocks = size // 65536
chosen = random.Random(int(percent * 1000)).sample(range(blocks), int(blocks * percent / 100))
for i, block in enumerate(chosen):
    # Through the guest device's own BlockBackend (a new one on the node would conflict with
    # the device's write permission); qemu-io's report goes to QEMU's stdout, errors come back.
    out = cmd("human-monitor-command", **{"command-line":
              f'qemu-io -d /machine/peripheral/vda/virtio-backend "write -P {i % 255 + 1} {block * 65536} 64k"'})
    if out.strip(): sys.exit(f"qemu-io: {out}")
print(len(chosen) * 65536)
PY
}

backup full "$bytes"
for p in $percents; do
    written=$(dirty "$p")
    backup "$p%" "$written"
done

# The last chain must restore to the disk as it is now.
last=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readlines()[-1])["report"]["disks"][0]["image"])' "$results")
if qemu-img compare -U -q -f qcow2 -F qcow2 "$disk" "$backups/$last"; then same=true; else same=false; fi
stop_launched "$qpid"
pids=()

# The whole disk with plain `swiftnbd copy` from qemu-nbd over TLS, for the time comparison.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
launch "$work/qemu-nbd.out" qemu-nbd --object "tls-creds-x509,id=tls0,dir=$pki,endpoint=server,verify-peer=on" --tls-creds tls0 \
    -f qcow2 -r -x disk -b 127.0.0.1 -p "$port" -t "$disk"
npid=$launched
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
sync
start=$(date +%s.%N)
copy_stats=$("$SWIFTNBD" copy --no-progress --stats "nbds://localhost:$port/disk?tls-certificates=$pki" "$work/whole.qcow2")
copy_seconds=$(python3 -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$start" "$(date +%s.%N)")
stop_launched "$npid"
pids=()
echo "{\"label\": \"swiftnbd copy (whole disk)\", \"seconds\": $copy_seconds, \"stats\": \"$copy_stats\"}" >> "$results"

python3 - "$results" "$size" "$same" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
copy = [r for r in rows if "stats" in r][0]
rows = [r for r in rows if "report" in r]
print(f"# swiftnbd backup benchmark: {sys.argv[2]} qcow2 disk of random data, QEMU's NBD server with TLS (client certificates)")
print(f"last chain identical to the disk (qemu-img compare): {sys.argv[3]}")
words = copy["stats"].split()
stats = {words[i]: words[i + 1] for i in range(0, len(words) - 1, 2)}
print(f"swiftnbd copy of the whole disk from qemu-nbd over TLS: {copy['seconds']:.2f} s, read {int(stats['read']) / 1048576:.0f} MiB")
print("| backup | dirty MiB | read MiB | written MiB | read / dirty | seconds | time vs whole-disk copy | MiB/s |")
print("|---|---|---|---|---|---|---|---|")
for r in rows:
    d = r["report"]["disks"][0]
    ratio = d["bytesRead"] / r["dirty"] if r["dirty"] else 0
    print(f"| {r['label']} | {r['dirty'] / 1048576:.0f} | {d['bytesRead'] / 1048576:.0f} | {d['bytesWritten'] / 1048576:.0f} | "
          f"{ratio:.3f} | {r['report']['seconds']:.2f} | {r['report']['seconds'] / copy['seconds']:.3f} | {d['throughputMiBps']:.0f} |")
PY
