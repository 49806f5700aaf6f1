#!/usr/bin/env bash
# Fails (and lists them) if any process the interop tests started is still running: every such
# process, and whatever it started in turn, carries SWIFTNBD_TEST_TOKEN in its environment
# (Tests/InteropTests/Support/ProcessLedger.swift). Zombies do not count.
set -euo pipefail
left=()
for environ in /proc/[0-9]*/environ; do
    pid=${environ#/proc/}; pid=${pid%/environ}
    { tr '\0' '\n' < "$environ"; } 2>/dev/null | grep -q '^SWIFTNBD_TEST_TOKEN=' || continue
    state=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -c1) || continue
    [[ $state == Z ]] && continue
    left+=("$pid: $({ tr '\0' ' ' < "/proc/$pid/cmdline"; } 2>/dev/null)")
done
if [[ ${#left[@]} -gt 0 ]]; then
    echo "processes started by the tests are still running:" >&2
    printf '  %s\n' "${left[@]}" >&2
    exit 1
fi
echo "no process started by the tests outlived them"
