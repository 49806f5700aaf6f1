#!/usr/bin/env python3
"""Turns the JSON lines of Benchmarks/migration-strategies.sh into the README's table."""
import json
import sys

rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
print("| dirty rate | bandwidth cap | strategy | completed | total s | downtime ms | RAM sent MiB | iterations | peak throttle % | measured dirty MiB/s | post-copy s / requests |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    res = r.get("result") or {}
    ok = res.get("status") == "completed" and r.get("identical")
    mib = lambda v: f"{v / 1048576:.0f}" if isinstance(v, (int, float)) else "-"
    # 0 means QEMU had not measured a rate yet when the run ended: no figure, not zero.
    rate = lambda v: f"{v / 1048576:.0f}" if isinstance(v, (int, float)) and v > 0 else "-"
    if ok:
        done = "yes"
    elif res.get("code") == "timed out":
        done = "no (time limit)"
    elif res.get("status") == "failed":
        done = "no: " + (res.get("code") or "failed")
    else:
        done = "no"
    dirty = res.get("peak-dirty-bytes-per-second")
    if dirty is None and res.get("diagnosis"):
        dirty = res["diagnosis"].get("dirty-bytes-per-second")
    post = "-"
    if res.get("postcopy"):
        post = f"{res.get('postcopy-seconds') or 0:.1f} / {res.get('postcopy-requests') or 0}"
    throttle = res.get("peak-throttle-percent")
    print(f"| {r['rate']} MiB/s | {r['bandwidth']} | {r['strategy']} | {done} | "
          f"{res['total-seconds']:.1f} | {res.get('downtime-ms', '-')} | {mib(res.get('ram-transferred-bytes'))} | "
          f"{res.get('ram-iterations', '-')} | {throttle if throttle is not None else '-'} | {rate(dirty)} | {post} |"
          if ok else
          f"| {r['rate']} MiB/s | {r['bandwidth']} | {r['strategy']} | {done} | - | - | - | "
          f"{(res.get('diagnosis') or {}).get('iteration', '-')} | {(res.get('diagnosis') or {}).get('throttle-percent') or '-'} | {rate(dirty)} | - |")
