#!/usr/bin/env bash
# A worked example of `swiftnbd migrate` on one machine: a source VM whose tiny boot-sector
# guest keeps writing to its disk, a destination VM waiting with `-incoming defer`, and
# swiftnbd moving disk (NBD mirror over TLS) and RAM (TLS migration stream) between them.
# Prints the commands it runs and the migration report, then checks the images with
# qemu-img compare. Usage: scripts/migrate-example.sh [disk size, default 256M] [raw|qcow2]
set -euo pipefail
cd "$(dirname "$0")/.."
size=${1:-256M}
format=${2:-raw}
[[ $format == raw || $format == qcow2 ]] || { echo "format must be raw or qcow2" >&2; exit 64; }

scripts/install-deps.sh --peers
swift build -c release --product swiftnbd >&2
swiftnbd="$(swift build -c release --show-bin-path)/swiftnbd"
source scripts/lib/vm-workdir.sh
make_workdir swiftnbd-migrate-example

# One PKI for both ends: the source QEMU is the NBD and migration client, the destination
# (and swiftnbd's export) the server; each verifies the other against the same CA.
show "$swiftnbd" certs create "$work/pki" --hostname localhost --ip 127.0.0.1 >/dev/null

# Source disk: random data with the writing guest in sector 0. Destination: an empty image.
guest_disk "$work/src.raw" "$size"
show qemu-img create -q -f "$format" "$work/dst.$format" "$size"

vm() { # name image format endpoint extra-args...
    local name=$1 image=$2 fmt=$3 endpoint=$4; shift 4
    launch "$work/$name.out" qemu-system-x86_64 -name "$name" -machine pc "${accel[@]}" -m 128 -nodefaults -display none \
        -object "tls-creds-x509,id=tls0,dir=$work/pki,endpoint=$endpoint" \
        -blockdev "driver=file,filename=$image,node-name=vda-storage" \
        -blockdev "driver=$fmt,file=vda-storage,node-name=vda-format" \
        -device virtio-blk-pci,drive=vda-format,bootindex=1 \
        -chardev "file,id=dbg,path=$work/$name.log" -device isa-debugcon,iobase=0x402,chardev=dbg \
        -qmp "unix:$work/$name.qmp,server=on,wait=off" "$@"
}
vm dst "$work/dst.$format" "$format" server -S -incoming defer
vm src "$work/src.raw" raw client
for _ in $(seq 1 300); do grep -q BMIG "$work/src.log" 2>/dev/null && break; sleep 0.1; done
sleep 1 # the guest is writing: the mirror has live writes to follow

show "$swiftnbd" migrate --source-qmp "$work/src.qmp" --destination-qmp "$work/dst.qmp" \
    --disk "vda-format=$work/dst.$format,format=$format" --tls-certificates "$work/pki" \
    --source-tls-creds tls0 --destination-tls-creds tls0 --no-resume

# The destination is left paused (--no-resume) so its image can be compared unchanged.
show qemu-img compare -U -f raw -F "$format" "$work/src.raw" "$work/dst.$format"
