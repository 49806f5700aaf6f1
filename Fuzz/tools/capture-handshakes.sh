#!/usr/bin/env bash
# Captures real handshakes as seeds: qemu-img, qemu-io and nbdinfo (libnbd) talk to a server
# through record-relay.py; what the clients sent becomes server-negotiation seeds (in TLS off,
# on and require mode, with a STARTTLS option inserted after the client flags for the latter),
# what the server sent becomes client-negotiation seeds.
#
#   Fuzz/tools/capture-handshakes.sh [swiftnbd|qemu-nbd]   (default: swiftnbd, from $SWIFTNBD or PATH)
set -euo pipefail
cd "$(dirname "$0")/../.."
server=${1:-swiftnbd}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
truncate -s 1M "$work/disk.img"
printf 'hello' | dd of="$work/disk.img" bs=1 seek=4096 conv=notrunc status=none
port=$((20000 + RANDOM % 20000)) relay=$((port + 1))
case $server in
    swiftnbd) "${SWIFTNBD:-swiftnbd}" serve "$work/disk.img" --name disk --bind 127.0.0.1 --port "$port" >/dev/null 2>&1 & ;;
    qemu-nbd) qemu-nbd -f raw -x disk -t -p "$port" -b 127.0.0.1 -D "the disk" "$work/disk.img" & ;;
    *) echo "unknown server $server" >&2; exit 2 ;;
esac
python3 Fuzz/tools/record-relay.py "$relay" "$port" "$work/cap" &
# Wait for the server, then the relay (probing the relay would count as a connection).
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
for _ in $(seq 100); do ss -ltn | grep -q ":$relay " && break; sleep 0.1; done
uri=nbd://127.0.0.1:$relay/disk
run_client() {
    case $1 in
        1) qemu-img info "$uri" ;;
        2) qemu-io -f raw -c 'read 0 4k' -c 'write -P 0x5a 8192 4k' -c 'aio_flush' -c 'discard 0 512' -c 'write -z 65536 64k' "$uri" ;;
        3) nbdinfo "$uri" ;;
        4) nbdinfo --list "nbd://127.0.0.1:$relay" ;;
        5) nbdinfo --map "$uri" ;;
        6) qemu-img map --output=json "$uri" ;;
    esac
}
names=(x qemu-img-info qemu-io nbdinfo nbdinfo-list nbdinfo-map qemu-img-map)
for n in 1 2 3 4 5 6; do
    run_client "$n" >/dev/null 2>&1 || true
    sleep 0.3
    tool=${names[$n]}
    [[ -s $work/cap-$n.client ]] || continue
    python3 - "$work/cap-$n" "$server-$tool" <<'PY'
import sys, os, struct
cap, name = sys.argv[1], sys.argv[2]
client = open(cap + ".client", "rb").read()
server = open(cap + ".server", "rb").read()
starttls = b"IHAVEOPT" + struct.pack(">II", 5, 0)
for mode in (0, 1, 2):
    body = client[:4] + (starttls if mode else b"") + client[4:]
    open(f"Fuzz/corpus/server-negotiation/{name}-tls{mode}", "wb").write(bytes([mode]) + body)
for sel in (0, 2):
    open(f"Fuzz/corpus/client-negotiation/{name}-{sel}", "wb").write(bytes([sel, 1]) + server)
PY
done
ls Fuzz/corpus/server-negotiation | grep -c "$server" | sed "s/^/captured sessions (x3 modes) from $server: /"
