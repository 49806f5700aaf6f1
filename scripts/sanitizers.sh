#!/usr/bin/env bash
# The unit and end-to-end suites under AddressSanitizer (with LeakSanitizer) and/or
# ThreadSanitizer. Any sanitizer report, in the test process or in a process it starts, fails
# the run, as does any failing test.
#
#   scripts/sanitizers.sh [address|thread|all] [--clean] [--with-interop]
#
#   address|thread|all  which sanitizer(s); default all (address, then thread)
#   --clean             delete the scratch directory first (a from-scratch timing, as in CI)
#   --with-interop      also run InteropTests (real qemu/nbdkit/libnbd peers driving the
#                       sanitized swiftnbd binary); slow (about 8 more minutes each on 2 cores),
#                       so not part of CI
#
# Each sanitizer builds into its own scratch directory (.build-asan, .build-tsan; never
# .build), so the normal build is untouched and reruns are incremental. Reports are written
# with log_path under <scratch>/sanitizer-reports/ and printed at the end. Suppressions are in
# scripts/sanitizers/: only reports proven to lie in third-party/system code (the Swift
# runtime, Foundation, XCTest, GnuTLS, glibc), each with its reason; never SwiftNBD's own code.
# The last line is the summary: "sanitizers: PASS …" or "sanitizers: FAIL …".
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

which=all
clean=0
interop=0
for arg in "$@"; do
    case "$arg" in
        address|thread|all) which=$arg ;;
        --clean) clean=1 ;;
        --with-interop) interop=1 ;;
        -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "sanitizers.sh: unknown argument '$arg' (address|thread|all, --clean, --with-interop)" >&2; exit 2 ;;
    esac
done
case "$which" in
    all) sanitizers=(address thread) ;;
    *) sanitizers=("$which") ;;
esac

suites=(NBDProtocolTests BlockDevicesTests NBDTLSTests Qcow2Tests NBDServerTests NBDClientTests MigrationTests)
filter=$(IFS='|'; echo "^(${suites[*]})\\.")
supp=$root/scripts/sanitizers

summaries=()
failed=0
started=$SECONDS

# Runs `swift test` on the tests matching $2 with the sanitizer options already exported; adds
# to run_status and run_tests.
run_tests() {
    local log=$1 test_filter=$2 status n
    set +e
    swift test --skip-build --sanitize="$sanitizer" --scratch-path "$scratch" --filter "$test_filter" 2>&1 | tee "$log"
    status=${PIPESTATUS[0]}
    set -e
    (( status != 0 )) && run_status=$status
    n=$(grep -Eo 'Test run with [0-9]+ tests?' "$log" | tail -1 | grep -Eo '[0-9]+' || true)
    run_tests=$((run_tests + ${n:-0}))
    return 0
}

run_one() {
    local sanitizer=$1 scratch reports build_s test_s count=0 run_status=0 run_tests=0 t0 file
    case "$sanitizer" in
        address) scratch=.build-asan ;;
        thread) scratch=.build-tsan ;;
    esac
    if (( clean )); then rm -rf "$scratch"; fi
    reports=$root/$scratch/sanitizer-reports/$(date +%Y%m%d-%H%M%S)
    mkdir -p "$reports"

    echo "== sanitizers: $sanitizer: building into $scratch"
    t0=$SECONDS
    if ! swift build --build-tests --sanitize="$sanitizer" --scratch-path "$scratch"; then
        summaries+=("$sanitizer: FAIL (build failed after $((SECONDS - t0)) s)")
        failed=1
        return
    fi
    build_s=$((SECONDS - t0))

    # halt_on_error: stop at the first report; exitcode: a report is never a pass, even if the
    # test process would otherwise exit 0; log_path: reports from every sanitized process
    # (including a swiftnbd the tests start) land in $reports and are counted below. The
    # caller's own *SAN_OPTIONS come last, so they can add to or override these.
    local asan="halt_on_error=1:abort_on_error=0:exitcode=66:detect_leaks=1:detect_stack_use_after_return=1:check_initialization_order=1:strict_init_order=1:suppressions=$supp/asan.supp:log_path=$reports/asan${ASAN_OPTIONS_USER:+:$ASAN_OPTIONS_USER}"
    export ASAN_OPTIONS=$asan
    export LSAN_OPTIONS="suppressions=$supp/lsan.supp:print_suppressions=0${LSAN_OPTIONS_USER:+:$LSAN_OPTIONS_USER}"
    export TSAN_OPTIONS="halt_on_error=1:abort_on_error=0:exitcode=66:second_deadlock_stack=1:suppressions=$supp/tsan.supp:log_path=$reports/tsan${TSAN_OPTIONS_USER:+:$TSAN_OPTIONS_USER}"

    echo "== sanitizers: $sanitizer: running ${suites[*]}"
    t0=$SECONDS
    run_tests "$reports/swift-test.log" "$filter"
    if (( interop )); then
        # The interop runner leaks every Foundation Process it starts (swift-corelibs-foundation
        # keeps Process in a reference cycle; swiftlang/swift-corelibs-foundation#3260), so leak
        # checking is off in the runner process only; the sanitized swiftnbd it starts keeps it,
        # through a wrapper given as $SWIFTNBD (Tests/InteropTests/Support/Peers.swift).
        local wrapper=$reports/swiftnbd
        printf '#!/bin/sh\nASAN_OPTIONS="%s" exec "%s" "$@"\n' "$asan" "$root/$scratch/debug/swiftnbd" > "$wrapper"
        chmod +x "$wrapper"
        echo "== sanitizers: $sanitizer: running InteropTests with $wrapper"
        ASAN_OPTIONS="$asan:detect_leaks=0" SWIFTNBD=$wrapper run_tests "$reports/swift-test-interop.log" '^InteropTests\.'
    fi
    test_s=$((SECONDS - t0))
    unset ASAN_OPTIONS LSAN_OPTIONS TSAN_OPTIONS

    for file in "$reports"/asan.* "$reports"/tsan.*; do
        [[ -s "$file" ]] || continue
        count=$((count + 1))
        echo "== sanitizers: $sanitizer: report in $file:"
        cat "$file"
    done
    local what="$run_tests tests, $count report(s), build ${build_s} s, tests ${test_s} s"
    if [[ $run_status -ne 0 || $count -ne 0 ]]; then
        summaries+=("$sanitizer: FAIL ($what, swift test exit $run_status, reports in $reports)")
        failed=1
    else
        summaries+=("$sanitizer: PASS ($what)")
    fi
}

# The options above are assembled from the caller's environment, not inherited blindly.
ASAN_OPTIONS_USER=${ASAN_OPTIONS:-}
LSAN_OPTIONS_USER=${LSAN_OPTIONS:-}
TSAN_OPTIONS_USER=${TSAN_OPTIONS:-}

for sanitizer in "${sanitizers[@]}"; do
    run_one "$sanitizer"
done

summary=${summaries[0]}
for line in "${summaries[@]:1}"; do summary+=" | $line"; done
if (( failed )); then
    echo "sanitizers: FAIL — $summary — $((SECONDS - started)) s"
    exit 1
fi
echo "sanitizers: PASS — $summary — $((SECONDS - started)) s"
