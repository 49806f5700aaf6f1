#!/usr/bin/env bash
# The whole test suite: installs the build libraries and the real peers (qemu-img, qemu-io,
# qemu-nbd, qemu-system-x86_64, nbdkit, nbdinfo, nbdcopy, nbdsh, fio, certtool), builds, and
# runs unit, end-to-end and interop tests. Under CI (CI=true) a missing peer fails its tests
# instead of skipping them.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh --peers
swift build --build-tests
swift test --skip-build "$@"
