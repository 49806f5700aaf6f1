"""scripts/stress.sh [--budget SECONDS | --long | --seed N | --cases N] [--master-seed N]

Runs random cases (see matrix.py) against `swiftnbd serve`; every failure prints its
seed, the case and a one-line replay command; exits non-zero on any failure."""

import argparse
import os
import random
import sys
import time

from . import procs
from .cases import run_case
from .matrix import case_from_seed, pick_seeds
from .server import binary


def replay_cmd(seed):
    env = "SWIFTNBD=%s " % os.environ["SWIFTNBD"] if os.environ.get("SWIFTNBD") else ""
    return "%sscripts/stress.sh --seed %d" % (env, seed)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="scripts/stress.sh", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget", type=float, help="run cases until this many seconds have passed")
    ap.add_argument("--long", action="store_true", help="= --budget 3600")
    ap.add_argument("--seed", type=int, action="append", help="replay exactly this case (repeatable)")
    ap.add_argument("--cases", type=int, help="run this many cases")
    ap.add_argument("--master-seed", type=int, help="seed the choice of case seeds (default: random, printed)")
    ap.add_argument("--kind", choices=["plain", "crash", "copy"], help="only cases of this kind")
    ap.add_argument("--list", action="store_true", help="print the cases that would run, run nothing")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir of failed cases (default on)")
    ap.add_argument("--no-keep", action="store_true", help="delete temp dirs of failed cases too")
    ap.add_argument("-v", "--verbose", action="store_true", help="print each step of each case")
    ap.add_argument("--stop-on-failure", action="store_true")
    ap.add_argument("--self-test", action="store_true", help="check the tester itself (no server), then exit")
    ap.add_argument("--depth", type=int, choices=[1, 4, 16],
                    help="force the requests in flight per connection (1 replays seeds of runs "
                         "made before aio cases existed, commit d82d90a and earlier)")
    a = ap.parse_args(argv)

    def on_term(signum, frame):   # CI timeouts send SIGTERM: clean up like Ctrl-C
        raise KeyboardInterrupt

    import signal
    signal.signal(signal.SIGTERM, on_term)
    if a.self_test:
        from .selftest import main as self_test
        return self_test()
    if a.long:
        a.budget = 3600.0
    if a.budget and not a.list:
        from .selftest import main as self_test
        self_test()     # < 1 s: an assertion here means the tester itself is broken
    exe = binary()
    if not os.path.exists(exe):
        print("stress: no swiftnbd binary at %s (build it, or set SWIFTNBD)" % exe, file=sys.stderr)
        return 2
    if a.seed:
        seeds = iter(a.seed)
        limit = len(a.seed)
        print("stress: replaying seed(s) %s with %s" % (" ".join(map(str, a.seed)), exe), flush=True)
    else:
        master = a.master_seed if a.master_seed is not None else random.SystemRandom().getrandbits(32)
        seeds = pick_seeds(master)
        if a.kind:
            seeds = (s for s in seeds if case_from_seed(s).kind == a.kind)
        limit = a.cases if a.cases is not None else (None if a.budget else 1)
        print("stress: master seed %d (replay this run with --master-seed %d), binary %s, %s" % (
            master, master, exe, "budget %ss" % a.budget if a.budget else "%s case(s)" % limit), flush=True)
    t0 = time.monotonic()
    passed, failed, ran = 0, [], []
    from .matrix import all_coverage
    want, covered, announced = all_coverage(), set(), False
    try:
        for seed in seeds:
            if limit is not None and passed + len(failed) >= limit:
                break
            if a.budget and time.monotonic() - t0 >= a.budget:
                break
            case = case_from_seed(seed)
            if a.depth:
                case.depth = a.depth
            if a.list:
                print("seed=%d %s" % (seed, case.describe()))
                passed += 1
                continue
            t = time.monotonic()
            ok, err, ctx = run_case(case, exe, verbose=a.verbose, keep_on_failure=not a.no_keep)
            ran.append(seed)
            dt = time.monotonic() - t
            covered |= case.coverage()
            if not announced and not a.seed and want <= covered:
                announced = True
                print("stress: whole matrix covered after %d cases, %.0fs" % (len(ran), time.monotonic() - t0), flush=True)
            if ok:
                passed += 1
                print("ok   seed=%d %.1fs %s" % (seed, dt, case.describe()), flush=True)
            else:
                failed.append(seed)
                print("FAIL seed=%d %.1fs %s" % (seed, dt, case.describe()), flush=True)
                print("  error: %s" % err)
                if not a.verbose:
                    print("\n".join(ctx.lines[-15:]))
                print(ctx.report)
                if not a.no_keep:
                    print("  files kept in %s" % ctx.tmp)
                print("  replay: %s" % replay_cmd(seed), flush=True)
                if a.stop_on_failure:
                    break
            left = procs.alive()
            if left:
                print("stress: processes still alive after seed %d: %s (killing)" % (seed, left))
                procs.kill_all()
    except KeyboardInterrupt:
        print("stress: interrupted")
        failed.append("interrupted")
    finally:
        left = procs.kill_all()
        if left:
            print("stress: killed leftover processes %s" % left)
    if a.list:
        print("stress: listed %d case(s)" % passed)
        return 0
    if ran:
        print("stress: seeds run: %s" % " ".join(map(str, ran)))
    if failed:
        print("stress: failed seeds: %s" % " ".join(map(str, failed)))
    print("stress: %d case(s) in %.0fs" % (passed + len(failed), time.monotonic() - t0))
    print("stress: %d passed, %d failed" % (passed, len(failed)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
