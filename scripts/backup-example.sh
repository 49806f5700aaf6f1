#!/usr/bin/env bash
# A worked example of `swiftnbd backup` on one machine: a VM whose tiny boot-sector guest keeps
# writing to its qcow2 disk is backed up in full, then twice incrementally, over QEMU's NBD
# server with TLS (client certificates). For each checkpoint the VM is paused just long enough
# to take the backup's checkpoint and a reference copy of the disk, and the guest runs on during
# the copy; at the end every checkpoint's chain is restored (qemu-img convert and swiftnbd copy)
# and compared with its reference. Usage: scripts/backup-example.sh [disk size, default 256M]
set -euo pipefail
cd "$(dirname "$0")/.."
size=${1:-256M}

scripts/install-deps.sh --peers
swift build -c release --product swiftnbd >&2
swiftnbd="$(swift build -c release --show-bin-path)/swiftnbd"
source scripts/lib/vm-workdir.sh
make_workdir swiftnbd-backup-example

# QEMU's NBD server and swiftnbd (the client) verify each other against one CA.
show "$swiftnbd" certs create "$work/pki" --hostname localhost --ip 127.0.0.1 >/dev/null

# The disk: random data with the writing guest in sector 0, as qcow2 (QEMU keeps the
# persistent checkpoint bitmaps in qcow2 images).
guest_disk "$work/disk.raw" "$size"
show qemu-img convert -q -f raw -O qcow2 "$work/disk.raw" "$work/vm.qcow2"
rm "$work/disk.raw"

launch "$work/vm.out" qemu-system-x86_64 -name example -machine pc "${accel[@]}" -m 128 -nodefaults -display none \
    -blockdev "driver=file,filename=$work/vm.qcow2,node-name=vda-storage" \
    -blockdev driver=qcow2,file=vda-storage,node-name=vda-format \
    -device virtio-blk-pci,drive=vda-format,bootindex=1 \
    -chardev "file,id=dbg,path=$work/vm.log" -device isa-debugcon,iobase=0x402,chardev=dbg \
    -qmp "unix:$work/vm.qmp,server=on,wait=off" -qmp "unix:$work/control.qmp,server=on,wait=off"
for _ in $(seq 1 300); do grep -q BMIG "$work/vm.log" 2>/dev/null && break; sleep 0.1; done

qmp() { # stop | resume-at-checkpoint: on the second monitor (the first is swiftnbd's)
    python3 - "$work/control.qmp" "$1" <<'PY'
import json, socket, sys, time
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); f = s.makefile("rw")
f.readline()
def run(command):
    f.write(json.dumps({"execute": command}) + "\n"); f.flush()
    while "event" in (reply := json.loads(f.readline())): pass
    if "error" in reply: sys.exit(f"{command}: {reply['error']}")
    return reply["return"]
run("qmp_capabilities")
if sys.argv[2] == "stop":
    run("stop")
else:
    # The checkpoint is taken when swiftnbd's fleecing job appears; resume the guest then, so
    # it writes while the backup copies (QEMU keeps the old data for the backup's view).
    for _ in range(3000):
        if any(j["device"] == "swiftnbd-backup-0" for j in run("query-block-jobs")): break
        time.sleep(0.01)
    run("cont")
PY
}

backups=$work/backups
for round in 0 1 2; do
    sleep 1 # the guest writes: the next checkpoint has something to record
    qmp stop
    # A stopped VM has flushed its disk: a shared read now sees exactly the checkpoint.
    qemu-img convert -U -q -f qcow2 -O raw "$work/vm.qcow2" "$work/reference-$round.raw"
    qmp resume-at-checkpoint & resume=$!
    show "$swiftnbd" backup --qmp "$work/vm.qmp" --disk vda-format --tls-certificates "$work/pki" "$backups"
    wait "$resume"
done
show cat "$backups/manifest.json" >&2

for round in 0 1 2; do
    image=$(ls "$backups"/vda-format/000$round-*.qcow2)
    show qemu-img info --backing-chain "$image" | grep -E '^(image|backing file):' >&2
    show qemu-img convert -f qcow2 -O raw "$image" "$work/restored-$round.raw"
    show qemu-img compare -q -f raw -F raw "$work/reference-$round.raw" "$work/restored-$round.raw"
done
show "$swiftnbd" copy --no-progress "$(ls "$backups"/vda-format/0002-*.qcow2)" "$work/restored-swiftnbd.raw"
show qemu-img compare -q -f raw -F raw "$work/reference-2.raw" "$work/restored-swiftnbd.raw"
echo "Every checkpoint restores identical to the disk as it was when it was taken." >&2
