#!/usr/bin/env bash
# The whole test suite: installs the build libraries and the real peers (qemu-img, qemu-io,
# qemu-nbd, qemu-system-x86_64, nbdkit, nbdinfo, nbdcopy, nbdsh, fio, certtool), builds, and
# runs, in order:
#   1. unit, end-to-end and interop tests (swift test);
#   2. the model-based qcow2/raw stress tester for STRESS_SECONDS (default 120) over its whole
#      matrix, with a fresh master seed each run (printed; see docs/stress-tester.md);
#   3. every libFuzzer target for FUZZ_SECONDS (default 60) each on its corpus (docs/fuzzing.md);
#   4. the unit and end-to-end suites under AddressSanitizer and ThreadSanitizer.
# After the tests, no process they started may still run (each test checks its own too; see
# Tests/InteropTests/Support/ProcessLedger.swift). Under CI (CI=true) a missing peer fails its
# tests instead of skipping them. Arguments go to
# `swift test` and skip stages 2-4 (e.g. scripts/test.sh --filter NAME runs a subset).
set -euo pipefail
cd "$(dirname "$0")/.."

stage() { echo; echo "==== $* ($(date -u +%H:%M:%S))"; }

scripts/install-deps.sh --peers
stage "build"
swift build --build-tests
# The man page generator next to the binary, for the install-step tests (InstallInteropTests).
swift build --product generate-manual
stage "swift test"
swift test --skip-build "$@"
scripts/lib/leftover-processes.sh
[[ $# -gt 0 ]] && exit 0

stage "stress tester, ${STRESS_SECONDS:-120} s"
SWIFTNBD="$(swift build --show-bin-path)/swiftnbd" scripts/stress.sh --budget "${STRESS_SECONDS:-120}"
stage "fuzz targets, ${FUZZ_SECONDS:-60} s each"
FUZZ_SECONDS="${FUZZ_SECONDS:-60}" scripts/fuzz.sh --ci
stage "sanitizers (ASan, TSan)"
scripts/sanitizers.sh all
stage "all stages passed"
