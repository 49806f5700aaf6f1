# Sourced by the scripts that run QEMU VMs in a temporary directory (scripts/*-example.sh,
# Benchmarks/migration*.sh, Benchmarks/backup.sh).
#   make_workdir PREFIX       sets $work to a new directory; on exit every process started with
#                             `launch` is stopped and $work removed.
#   launch LOG COMMAND…       prints COMMAND, starts it in the background with its output in LOG,
#                             and records its PID in $pids and $launched. The PID is COMMAND's
#                             own: starting a shell function with `&` would record the PID of the
#                             subshell running the function, and killing that leaves COMMAND
#                             running (how the example once leaked both VMs).
#   stop_launched PID…        SIGTERM, up to 10 s to exit, then SIGKILL; returns non-zero and
#                             names any process that still survives.
#   show COMMAND…             prints COMMAND, then runs it (the worked examples show what they do).
#   guest_disk PATH SIZE      a raw image of SIZE random bytes whose sector 0 is the writing
#                             boot-sector guest (Fixtures/migration/boot-sector.bin).
#   $accel                    QEMU accelerator arguments: KVM when usable (unless
#                             SWIFTNBD_MIGRATION_ACCEL=tcg), TCG otherwise.

pids=()
make_workdir() {
    work=$(mktemp -d "/tmp/$1.XXXXXX")
    trap cleanup_workdir EXIT
}

launch() {
    local log=$1; shift
    printf '+ %s &\n' "$*" >&2
    "$@" >"$log" 2>&1 </dev/null &
    launched=$!
    pids+=("$launched")
}

stop_launched() {
    local pid alive=() left=()
    for pid in "$@"; do
        if kill -0 "$pid" 2>/dev/null; then kill "$pid" 2>/dev/null || true; alive+=("$pid"); fi
    done
    for _ in $(seq 1 100); do
        left=()
        for pid in "${alive[@]}"; do kill -0 "$pid" 2>/dev/null && left+=("$pid"); done
        [[ ${#left[@]} -eq 0 ]] && break
        sleep 0.1
    done
    for pid in "${left[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
    for pid in "$@"; do wait "$pid" 2>/dev/null || true; done
    left=()
    for pid in "$@"; do kill -0 "$pid" 2>/dev/null && left+=("$pid"); done
    if [[ ${#left[@]} -gt 0 ]]; then
        echo "still running after SIGKILL: ${left[*]}" >&2
        return 1
    fi
}

show() { printf '+ %s\n' "$*" >&2; "$@"; }

guest_disk() {
    local path=$1 size=$2
    show qemu-img create -q -f raw "$path" "$size"
    head -c "$(stat -c %s "$path")" /dev/urandom > "$path"
    dd if=Fixtures/migration/boot-sector.bin of="$path" conv=notrunc status=none
}

cleanup_workdir() {
    local status=$?
    [[ ${#pids[@]} -gt 0 ]] && { stop_launched "${pids[@]}" || status=1; }
    rm -rf "$work"
    exit "$status"
}

if [[ -r /dev/kvm && -w /dev/kvm && ${SWIFTNBD_MIGRATION_ACCEL:-} != tcg ]]; then
    accel=(-accel kvm -cpu qemu64,-pni)
else
    accel=(-accel tcg -cpu qemu64)
fi
