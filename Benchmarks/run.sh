#!/usr/bin/env bash
# Builds swiftnbd in release mode and runs the side-by-side benchmark against qemu-nbd and
# nbdkit (and nbdcopy / qemu-img for the copy rows). Prints markdown tables; the latest run
# is kept in Benchmarks/results/latest.md. Extra arguments go to bench.py
# (e.g. --sections plain,tls --rounds 3 --size 1G --runtime 5).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --peers
swift build -c release --product swiftnbd >&2
bin="$(swift build -c release --show-bin-path)/swiftnbd"
mkdir -p Benchmarks/results
{
    echo "# swiftnbd benchmark, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(uname -r)"
    echo "# peers: $(qemu-nbd --version | head -1); nbdkit $(nbdkit --version | cut -d' ' -f2); $(nbdcopy --version | head -1); $(fio --version)"
    python3 Benchmarks/bench.py --swiftnbd "$bin" "$@"
} | tee Benchmarks/results/latest.md
