#!/usr/bin/env bash
# The main job on a built-in default: build swiftnbd, create a throw-away PKI in QEMU's
# layout, make a demo image, serve it over TLS (client certificates required) on
# 127.0.0.1:10809 and print the exact commands that connect to it. Ctrl-C stops the server
# cleanly. Override with SWIFTNBD_DEMO_DIR, SWIFTNBD_DEMO_PORT.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh --clients
swift build -c release --product swiftnbd >&2
bin="$(swift build -c release --show-bin-path)/swiftnbd"

dir="${SWIFTNBD_DEMO_DIR:-$PWD/.demo}"
port="${SWIFTNBD_DEMO_PORT:-10809}"
mkdir -p "$dir"
if [[ ! -f "$dir/pki/server-cert.pem" ]]; then
    "$bin" certs create "$dir/pki" --hostname localhost --ip 127.0.0.1 --ip ::1 --client-name demo-client --psk-user demo
fi
if [[ ! -f "$dir/demo.img" ]]; then
    # 64 MiB, sparse, with a greeting in the first sector so there is something to read.
    truncate -s 64M "$dir/demo.img"
    printf 'Hello from SwiftNBD: this image is served over TLS.\n' | dd of="$dir/demo.img" conv=notrunc status=none
fi

cat <<MSG
Serving $dir/demo.img as export 'demo' on 127.0.0.1:$port, TLS required (x509, client certificate checked).
Connect with:
  qemu-img info --object tls-creds-x509,id=tls0,dir=$dir/pki,endpoint=client \\
      --image-opts driver=nbd,host=127.0.0.1,port=$port,export=demo,tls-creds=tls0
  nbdinfo 'nbds://127.0.0.1:$port/demo?tls-certificates=$dir/pki'
  $bin info 'nbds://127.0.0.1:$port/demo?tls-certificates=$dir/pki'
PSK instead of certificates: nbdinfo 'nbds://demo@127.0.0.1:$port/demo?tls-psk-file=$dir/pki/keys.psk'
(with the server started as: $bin serve $dir/demo.img --name demo --tls-psk $dir/pki/keys.psk)
Press Ctrl-C to stop.
MSG
exec "$bin" serve "$dir/demo.img" --name demo --description "SwiftNBD demo image" \
    --bind 127.0.0.1 --port "$port" --tls require --tls-certificates "$dir/pki"
