# Sourced by the scripts that run QEMU VMs in a temporary directory (migrate-example.sh,
# Benchmarks/migration.sh).
#   make_workdir PREFIX  sets $work to a new directory; on exit every PID in $pids is
#                        killed and $work removed.
#   $accel               QEMU accelerator arguments: KVM when usable (unless
#                        SWIFTNBD_MIGRATION_ACCEL=tcg), TCG otherwise.

pids=()
make_workdir() {
    work=$(mktemp -d "/tmp/$1.XXXXXX")
    trap cleanup_workdir EXIT
}
cleanup_workdir() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}

if [[ -r /dev/kvm && -w /dev/kvm && ${SWIFTNBD_MIGRATION_ACCEL:-} != tcg ]]; then
    accel=(-accel kvm -cpu qemu64,-pni)
else
    accel=(-accel tcg -cpu qemu64)
fi
