"""Model-based randomized stress tester for `swiftnbd serve` (issue 9).

Run it as `scripts/stress.sh` (which runs `/usr/bin/python3 -m stress`); see
docs/stress-tester.md for the design.
"""
