#!/usr/bin/env bash
# Migration strategies under load: a Linux guest (scripts/build-linux-guest.sh: Debian's
# cloud kernel, busybox, a RAM dirtier at a set rate) is migrated with its disk over NBD+TLS
# by `swiftnbd migrate` under each strategy, at each RAM bandwidth cap and dirty rate. One
# row per run: completed or not, total time, downtime, RAM sent, iterations, peak throttle;
# every completed run is checked: with `qemu-img compare` (destination left paused for it),
# or for post-copy, which resumes the destination during the migration, by the guest's own
# console and disk records (Benchmarks/migration-strategies-check.py).
#
# usage: Benchmarks/migration-strategies.sh [strategies] [bandwidths] [dirty rates MiB/s]
#   defaults: "precopy auto-converge postcopy multifd xbzrle multifd-zstd" "32M 128M" "8 256"
#   env: SWIFTNBD (binary; default release build), RAM_TIMEOUT (s, default 60: the pre-copy
#   time limit, after which a run counts as not completed), GUEST_MIB (working set, 128),
#   VM_MIB (guest RAM, 512), RESULTS (JSON-lines output file; default in the work dir),
#   LOG_DIR (keeps each run's progress lines, `--progress-fd` JSON lines and stderr there),
#   QEMU_BIN_DIR (a directory with another qemu-system-x86_64/qemu-img, e.g. QEMU 10 from
#   /opt/swiftnbd-peers/qemu-backports/bin; the default is the one on PATH).
set -euo pipefail
cd "$(dirname "$0")/.."
strategies=${1:-"precopy auto-converge postcopy multifd xbzrle multifd-zstd"}
bandwidths=${2:-"32M 128M"}
rates=${3:-"8 256"}
ram_timeout=${RAM_TIMEOUT:-60}
guest_mib=${GUEST_MIB:-128}
vm_mib=${VM_MIB:-512}

if [ -n "${QEMU_BIN_DIR:-}" ]; then export PATH="$QEMU_BIN_DIR:$PATH"; fi
echo "QEMU: $(qemu-system-x86_64 --version | head -n1)" >&2
if [ -z "${SWIFTNBD:-}" ]; then
    swift build -c release --product swiftnbd >&2
    SWIFTNBD="$(swift build -c release --show-bin-path)/swiftnbd"
fi
guest=$(scripts/build-linux-guest.sh)
source scripts/lib/vm-workdir.sh
make_workdir swiftnbd-migration-strategies
# The Debian kernel needs TCG on this kind of host; both sides must match anyway.
accel=(-accel tcg -cpu qemu64)

pki=$work/pki
mkdir -p "$pki"
printf 'cn = "bench CA"\nca\ncert_signing_key\nexpiration_days = 2\n' > "$pki/ca.info"
certtool --generate-privkey --key-type ecdsa --outfile "$pki/ca-key.pem" 2>/dev/null
certtool --generate-self-signed --load-privkey "$pki/ca-key.pem" --template "$pki/ca.info" --outfile "$pki/ca-cert.pem" 2>/dev/null
for role in server client; do
    printf 'cn = "localhost"\ndns_name = "localhost"\nip_address = "127.0.0.1"\nip_address = "::1"\ntls_www_%s\nencryption_key\nsigning_key\nexpiration_days = 2\n' "$role" > "$pki/$role.info"
    certtool --generate-privkey --key-type rsa --bits 2048 --outfile "$pki/$role-key.pem" 2>/dev/null
    certtool --generate-certificate --load-privkey "$pki/$role-key.pem" --load-ca-certificate "$pki/ca-cert.pem" \
        --load-ca-privkey "$pki/ca-key.pem" --template "$pki/$role.info" --outfile "$pki/$role-cert.pem" 2>/dev/null
done

vm() { # name disk rate extra-args...; the VM's PID is left in $launched
    local name=$1 disk=$2 rate=$3; shift 3
    local endpoint=client verify=""
    if [ "$name" = dst ]; then endpoint=server; verify=",verify-peer=on"; fi
    launch "$work/$name.out" qemu-system-x86_64 -name "$name" -machine pc "${accel[@]}" -m "$vm_mib" -nodefaults -no-user-config -display none \
        -object "tls-creds-x509,id=tls0,dir=$pki,endpoint=$endpoint$verify" \
        -kernel "$guest/vmlinuz" -initrd "$guest/initramfs.cpio.gz" \
        -append "console=ttyS0 quiet lmig.mib=$guest_mib lmig.rate=$rate" \
        -serial "file:$work/$name-console.log" \
        -blockdev "driver=file,filename=$disk,node-name=vda-storage,cache.direct=off" \
        -blockdev driver=raw,file=vda-storage,node-name=vda-format \
        -device virtio-blk-pci,drive=vda-format,id=vda \
        -qmp "unix:$work/$name.qmp,server=on,wait=off" "$@"
}

strategy_args() {
    case $1 in
        precopy) echo "" ;;
        auto-converge) echo "--auto-converge" ;;
        postcopy) echo "--postcopy-after 2" ;;
        converge-postcopy) echo "--converge postcopy" ;;
        multifd) echo "--multifd-channels 4" ;;
        xbzrle) echo "--xbzrle-cache 256M" ;;
        multifd-zstd) echo "--multifd-channels 4 --multifd-compression zstd" ;;
        *) echo "unknown strategy $1" >&2; exit 2 ;;
    esac
}

results=${RESULTS:-$work/results.jsonl}
: > "$results"
for rate in $rates; do
    for bandwidth in $bandwidths; do
        for strategy in $strategies; do
            src=$work/src.raw dst=$work/dst.raw
            qemu-img create -q -f raw "$src" 256M
            qemu-img create -q -f raw "$dst" 256M
            rm -f "$work"/*.qmp "$work"/*-console.log
            vm dst "$dst" "$rate" -S -incoming defer; dpid=$launched
            vm src "$src" "$rate"; spid=$launched
            for _ in $(seq 1 600); do grep -q "LMIG seq=" "$work/src-console.log" 2>/dev/null && break; sleep 0.1; done
            sleep 3   # let the dirty rate settle
            # Post-copy only makes sense with the guest running on the destination meanwhile, so
            # those runs resume it and are checked by the guest's own records instead.
            resume=--no-resume
            case $strategy in *postcopy) resume="" ;; esac
            # shellcheck disable=SC2046,SC2086
            if out=$("$SWIFTNBD" migrate --source-qmp "$work/src.qmp" --destination-qmp "$work/dst.qmp" \
                    --disk "vda-format=$dst" --tls-certificates "$pki" --source-tls-creds tls0 --destination-tls-creds tls0 \
                    --max-bandwidth "$bandwidth" $resume --timeout "$ram_timeout" --json --progress-fd 3 \
                    $(strategy_args "$strategy") 2>"$work/migrate.err" 3>"$work/progress.jsonl"); then
                if [ -n "$resume" ]; then
                    if qemu-img compare -U -q -f raw -F raw "$src" "$dst"; then same=true; else same=false; fi
                else
                    sleep 5
                    same=$(python3 Benchmarks/migration-strategies-check.py "$src" "$dst" "$work/src-console.log" "$work/dst-console.log")
                fi
            else
                same=false
            fi
            errors=$(grep -c "MEMORY MISMATCH" "$work/src-console.log" || true)
            echo "{\"strategy\": \"$strategy\", \"bandwidth\": \"$bandwidth\", \"rate\": $rate, \"identical\": $same, \"guest-memory-errors\": $errors, \"result\": ${out:-null}}" >> "$results"
            echo "$strategy $bandwidth ${rate}MiB/s: $(echo "${out:-null}" | head -c 300)" >&2
            if [ -n "${LOG_DIR:-}" ]; then
                mkdir -p "$LOG_DIR"
                cp "$work/migrate.err" "$LOG_DIR/$strategy-$bandwidth-$rate.stderr"
                cp "$work/progress.jsonl" "$LOG_DIR/$strategy-$bandwidth-$rate.progress.jsonl"
            fi
            stop_launched "$spid" "$dpid"
            pids=()
        done
    done
done

python3 Benchmarks/migration-strategies-table.py "$results"
