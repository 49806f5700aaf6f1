#!/usr/bin/env bash
# Coverage-guided fuzzing with the Swift toolchain's own libFuzzer (see docs/fuzzing.md).
#
#   scripts/fuzz.sh --list                 target names, one per line
#   scripts/fuzz.sh TARGET SECONDS         build, then fuzz TARGET for SECONDS (0: no time limit)
#   scripts/fuzz.sh --merge TARGET SECONDS the same, then merge what it found into Fuzz/corpus/TARGET
#   scripts/fuzz.sh --ci                   every target for FUZZ_SECONDS (default 60) each;
#                                          non-zero exit on any crash, sanitizer report, leak or timeout
#   scripts/fuzz.sh --long [SECONDS] [TARGET…]
#                                          every target (or the ones named), cheapest first, until
#                                          10 million executions (FUZZ_RUNS) or SECONDS (default
#                                          3600) each; the final
#                                          statistics go to .fuzz-work/long-run.tsv; with
#                                          FUZZ_DEADLINE (a date, e.g. 03:40) each target gets at
#                                          most an equal share of the time left until then
#   scripts/fuzz.sh --replay TARGET FILE…  run the target on given inputs (e.g. a crash artifact)
#   scripts/fuzz.sh --build                only build
#
# Environment: FUZZ_SECONDS (--ci budget per target), FUZZ_RUNS (execution cap, --long default
# 10000000), FUZZ_JOBS (parallel fuzzing processes per target, default 1), FUZZ_ARGS (extra
# libFuzzer flags).
#
# The targets exist only when SWIFTNBD_FUZZ=1 (see the fuzz block at the end of Package.swift)
# and are built with -sanitize=fuzzer,address into their own scratch path, .build-fuzz. New
# corpus entries go to .fuzz-work/corpus/TARGET (the committed seeds in Fuzz/corpus/TARGET are
# only read, unless --merge); crash, leak and timeout inputs go to .fuzz-artifacts/.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

# Cheapest first (the order --ci and --long run them in).
targets=(distinguished-name psk-file uri qmp client-negotiation server-negotiation client-replies transmission qcow2)

max_len() {
    case "$1" in
        qcow2) echo 65536 ;;
        transmission|client-replies) echo 16384 ;;
        *) echo 4096 ;;
    esac
}

die() { echo "fuzz.sh: $*" >&2; exit 2; }

is_target() {
    local t
    for t in "${targets[@]}"; do [[ $t == "$1" ]] && return 0; done
    return 1
}

# build [TARGET…]: the fuzz products only (never swiftnbd: it has a main of its own).
build() {
    local t
    [[ $# -gt 0 ]] || set -- "${targets[@]}"
    echo "fuzz.sh: building $* (release, -sanitize=fuzzer,address, .build-fuzz)" >&2
    for t in "$@"; do
        SWIFTNBD_FUZZ=1 swift build -c release --scratch-path .build-fuzz \
            -Xswiftc -sanitize=fuzzer,address --product "fuzz-$t" >&2
    done
}

binary() { echo "$root/.build-fuzz/release/fuzz-$1"; }

prepare_dirs() {
    mkdir -p .fuzz-work/corpus/"$1" .fuzz-artifacts "Fuzz/corpus/$1"
    # Both are scratch: keep them out of git without touching the top-level .gitignore.
    [[ -f .fuzz-work/.gitignore ]] || echo '*' > .fuzz-work/.gitignore
    [[ -f .fuzz-artifacts/.gitignore ]] || echo '*' > .fuzz-artifacts/.gitignore
}

# run TARGET SECONDS [extra libFuzzer flags…]; output also goes to .fuzz-work/TARGET.log
run() {
    local target=$1 seconds=$2
    shift 2
    prepare_dirs "$target"
    local args=(
        -max_len="$(max_len "$target")" -timeout=20 -rss_limit_mb=4096 -print_final_stats=1
        -artifact_prefix="$root/.fuzz-artifacts/$target-"
        -max_total_time="$seconds"
    )
    [[ -f Fuzz/dict/$target.dict ]] && args+=(-dict="Fuzz/dict/$target.dict")
    [[ -n ${FUZZ_RUNS:-} ]] && args+=(-runs="$FUZZ_RUNS")
    local jobs=${FUZZ_JOBS:-1}
    [[ $jobs -gt 1 ]] && args+=(-jobs="$jobs" -workers="$jobs")
    # shellcheck disable=SC2206
    [[ -n ${FUZZ_ARGS:-} ]] && args+=($FUZZ_ARGS)
    echo "fuzz.sh: $target for ${seconds}s: $(binary "$target") ${args[*]} $* .fuzz-work/corpus/$target Fuzz/corpus/$target" >&2
    set +e
    SWIFT_BACKTRACE=${SWIFT_BACKTRACE:-enable=no} ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} \
        "$(binary "$target")" "${args[@]}" "$@" ".fuzz-work/corpus/$target" "Fuzz/corpus/$target" \
        2>&1 | tee ".fuzz-work/$target.log"
    local status=${PIPESTATUS[0]}
    set -e
    return "$status"
}

# The last coverage line and the final statistics of a run's log, as one TSV row.
summarize() {
    local target=$1 seconds=$2 status=$3 log=.fuzz-work/$1.log
    local last execs cov ft corp
    last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
    corp=$(sed -n 's/.* corp: \([0-9]*\/[0-9A-Za-z]*\).*/\1/p' <<<"$last")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "$target" "${execs:-?}" "${cov:-?}" "${ft:-?}" \
        "${corp:-?}" "$seconds" "$status"
}

case "${1:-}" in
    --list)
        printf '%s\n' "${targets[@]}"
        ;;
    --build)
        build
        ;;
    --ci)
        build
        seconds=${FUZZ_SECONDS:-60}
        failed=()
        for target in "${targets[@]}"; do
            if run "$target" "$seconds" >/dev/null 2>&1; then rc=0; else rc=$?; failed+=("$target"); fi
            summarize "$target" "$seconds" "$rc" | tee -a .fuzz-work/ci.tsv
        done
        if [[ ${#failed[@]} -gt 0 ]]; then
            echo "fuzz.sh: FAILED: ${failed[*]} (logs in .fuzz-work/, inputs in .fuzz-artifacts/)" >&2
            exit 1
        fi
        echo "fuzz.sh: all ${#targets[@]} targets ran ${seconds}s each without a finding" >&2
        ;;
    --long)
        seconds=${2:-3600}
        shift $(( $# < 2 ? $# : 2 ))
        if [[ $# -gt 0 ]]; then
            for target in "$@"; do is_target "$target" || die "unknown target '$target' (see --list)"; done
            targets=("$@")
        fi
        build "${targets[@]}"
        export FUZZ_RUNS=${FUZZ_RUNS:-10000000}
        [[ -f .fuzz-work/long-run.tsv ]] || printf 'date\ttarget\texecs\tcov\tft\tcorpus\tseconds\texit\n' > .fuzz-work/long-run.tsv
        status=0
        left=${#targets[@]}
        for target in "${targets[@]}"; do
            start=$(date +%s)
            budget=$seconds
            if [[ -n ${FUZZ_DEADLINE:-} ]]; then
                # Share the time left until the deadline among the targets still to run.
                share=$(( ($(date -d "$FUZZ_DEADLINE" +%s) - start) / left ))
                [[ $share -lt $budget ]] && budget=$share
                [[ $budget -lt 30 ]] && budget=30
            fi
            left=$((left - 1))
            if run "$target" "$budget" >/dev/null 2>&1; then rc=0; else rc=$?; status=1; fi
            summarize "$target" "$(( $(date +%s) - start ))" "$rc" | tee -a .fuzz-work/long-run.tsv
        done
        exit "$status"
        ;;
    --replay)
        target=${2:-}
        is_target "$target" || die "unknown target '$target' (see --list)"
        shift 2
        build "$target"
        exec "$(binary "$target")" "$@"
        ;;
    --merge)
        target=${2:-}
        is_target "$target" || die "unknown target '$target' (see --list)"
        build "$target"
        run "$target" "${3:-60}"
        "$(binary "$target")" -merge=1 -max_len="$(max_len "$target")" "Fuzz/corpus/$target" ".fuzz-work/corpus/$target"
        ;;
    ""|-h|--help)
        sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'
        ;;
    *)
        target=$1
        is_target "$target" || die "unknown target '$target' (see --list)"
        [[ ${2:-} =~ ^[0-9]+$ ]] || die "usage: scripts/fuzz.sh TARGET SECONDS"
        build "$target"
        run "$target" "$2"
        ;;
esac
