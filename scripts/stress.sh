#!/usr/bin/env bash
# Model-based stress tester for `swiftnbd serve` (issue 9); see docs/stress-tester.md.
#   scripts/stress.sh --budget 120      random cases over the whole matrix for 2 minutes
#   scripts/stress.sh --long            the same for an hour
#   scripts/stress.sh --seed N          replay one case
# Uses $SWIFTNBD, else .build/release/swiftnbd if newer than the sources, else .build/debug.
# libnbd's Python module is only importable by Debian's /usr/bin/python3.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here/.."
export PYTHONDONTWRITEBYTECODE=1
exec env PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}" /usr/bin/python3 -u -m stress "$@"
