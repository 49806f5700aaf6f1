"""The three kinds of case: plain (ops, then every end-of-case check), crash (SIGKILL
while requests are in flight, restart, check what survived) and copy (`swiftnbd copy`
between sparse images of at least 1 TiB)."""

import os
import random
import shutil
import tempfile
import time

from . import driver, images, procs
from . import model as M
from .server import Server, serve_options
from .workload import generate

OPS_TIMEOUT = 300


class Ctx:
    """Per-case state: temp dir, servers started, log lines."""

    def __init__(self, case, exe, verbose):
        self.case, self.exe, self.verbose = case, exe, verbose
        self.tmp = tempfile.mkdtemp(prefix="swiftnbd-stress-%d-" % case.seed)
        self.servers = []
        self.lines = []
        self.t0 = time.monotonic()

    def log(self, msg):
        line = "  [%6.1fs] %s" % (time.monotonic() - self.t0, msg)
        self.lines.append(line)
        if self.verbose:
            print(line, flush=True)

    def server(self, image, fmt, name, extra=()):
        sock = os.path.join(self.tmp, name + ".sock")
        s = Server(self.exe, image, fmt, sock, os.path.join(self.tmp, name + ".log"), extra)
        self.servers.append(s)
        return s

    def cache_args(self):
        if self.case.fmt != "qcow2" or self.case.cache != "tiny":
            return []
        have = serve_options(self.exe)
        args = []
        for opt in ("--l2-cache-size", "--refcount-cache-size"):
            if opt in have:
                args += [opt, "16K"]
            else:
                self.case.notes.append("(%s not in this binary: default)" % opt)
        return args

    def server_report(self, lines=30):
        """Each server's state and stderr: the lines that say why it died (Swift runtime
        failures, fatal errors, crash frames, error logs) first, then the tail."""
        out = []
        keys = ("runtime failure", "Fatal error", "fatal", "Crash", " at /", "error", "warning")
        for s in self.servers:
            st = "running" if s.alive() else ("exit status %s" % (s.proc.returncode if s.proc else "n/a"))
            full = s.log_tail(100000).splitlines()
            hot = [l for l in full if any(k in l for k in keys)][:25]
            body = []
            if hot:
                body.append("    key lines:")
                body += ["    ! " + l[:300] for l in hot]
            body.append("    last lines:")
            body += ["    | " + l[:300] for l in full[-lines:]]
            out.append("  server %s (%s), %s:\n%s" % (os.path.basename(s.log_path), st, s.log_path,
                                                     "\n".join(body)))
        return "\n".join(out)

    def cleanup(self, keep):
        for s in self.servers:
            if s.alive():
                s.crash()
        if not keep:
            shutil.rmtree(self.tmp, ignore_errors=True)


def _make_image(ctx, model, rng):
    case = ctx.case
    img = os.path.join(ctx.tmp, "disk." + case.fmt)
    if case.fmt == "raw":
        images.create_raw(img, case.size)
    elif case.backing != "none":
        base, bfmt, bsize = images.make_base(case, ctx.tmp, model, rng)
        ctx.log("base %s %s, %d bytes of data in the model" % (bfmt, bsize, model.data_bytes()))
        images.create_qcow2(img, case, backing=base, backing_fmt=bfmt)
    else:
        images.create_qcow2(img, case)
    return img


def _finish(ctx, srv, model, img, rng, allow_leaks=False):
    """Read everything back, SIGTERM (exit 0), qemu-img check, qemu-img compare."""
    driver.read_back(srv.sock, model, "latest", rng, spot_reads=16)
    ctx.log("read-back ok (%d modelled bytes of data)" % model.data_bytes())
    srv.stop()
    ctx.log("SIGTERM: exit 0")
    if ctx.case.fmt == "qcow2":
        ctx.log("qemu-img check: " + images.check(img, allow_leaks=allow_leaks))
    images.compare(model, ctx.tmp, img, ctx.case.fmt)
    ctx.log("qemu-img compare: identical")


def _start(ctx, salt, track=False):
    """The common opening of every kind: the case's own RNG, the model, the image, its
    server (started), the operations and the engine that runs them (in that order, so a seed
    replays the same image and ops)."""
    case = ctx.case
    rng = random.Random(case.seed ^ salt)
    model = M.Model(case.size, track_candidates=True) if track else M.Model(case.size)
    img = _make_image(ctx, model, rng)
    srv = ctx.server(img, case.fmt, _SERVER_NAME.get(case.kind, "disk"), ctx.cache_args())
    srv.start()
    ops = generate(case)
    eng = driver.Engine(model, ctx.log, track=True) if track else driver.Engine(model, ctx.log)
    return rng, model, img, srv, ops, eng


# The export/log name of the server each kind starts first.
_SERVER_NAME = {"copy": "src"}


def run_plain(ctx):
    case = ctx.case
    rng, model, img, srv, ops, eng = _start(ctx, 0x5EED)
    cut = len(ops) // 2 if case.restart else len(ops)
    eng.run(ops, 0, cut, srv.sock, case.conns, OPS_TIMEOUT, server=srv, depth=case.depth)
    if cut < len(ops):
        srv.stop()
        ctx.log("graceful restart after op %d: exit 0" % cut)
        if case.fmt == "qcow2":
            ctx.log("qemu-img check: " + images.check(img))
        srv.start()
        driver.read_back(srv.sock, model, "latest", rng)
        eng.run(ops, cut, len(ops), srv.sock, case.conns, OPS_TIMEOUT, server=srv, depth=case.depth)
    ctx.log("%d ops ok: %s" % (len(ops), eng.stats))
    _finish(ctx, srv, model, img, rng)


def run_crash(ctx):
    case = ctx.case
    rng, model, img, srv, ops, eng = _start(ctx, 0xC4A5, track=True)
    kills = sorted(rng.sample(range(10, len(ops) - 10), case.kills))
    pos = 0
    leaky = False
    for n, k in enumerate(kills):
        if k < pos:
            continue
        nxt = eng.run(ops, pos, len(ops), srv.sock, case.conns, OPS_TIMEOUT, kill_at=k, server=srv,
                      depth=case.depth)
        srv.crash()
        rc = srv.proc.returncode
        if rc != -9:
            raise driver.CaseFailure("server exited %s before the SIGKILL" % rc)
        ctx.log("kill %d/%d at op %d (next op %d)" % (n + 1, len(kills), k, nxt))
        if case.fmt == "qcow2":
            res = images.check(img, allow_leaks=True)
            ctx.log("qemu-img check after crash: " + res)
            leaky = res != "clean"
            if leaky and rng.random() < 0.5:
                images.repair_leaks(img)
                leaky = False
                ctx.log("leaks repaired with qemu-img check -r leaks")
        srv.start()
        st = {}
        driver.read_back(srv.sock, model, "candidates", stats=st)
        ctx.log("after restart: every byte is one of its candidates (%d pieces had several, "
                "%d ranges read as an older one)" % (st.get("uncertain", 0), st.get("older", 0)))
        pos = nxt
    eng.run(ops, pos, len(ops), srv.sock, case.conns, OPS_TIMEOUT, server=srv, depth=case.depth)
    ctx.log("ops ok: %s" % eng.stats)
    _finish(ctx, srv, model, img, rng, allow_leaks=leaky)


def _verify_image(ctx, path, fmt, model, rng, name):
    """Read-back spot check of a copy through a read-only server, then compare."""
    images.compare(model, ctx.tmp, path, fmt)
    srv = ctx.server(path, fmt, name, ["--read-only"])
    srv.start()
    driver.read_back(srv.sock, model, "latest", rng, spot_reads=8)
    srv.stop()
    if fmt == "qcow2":
        images.check(path)
    ctx.log("%s: identical to the model (compare and read-back)" % name)


def run_copy(ctx):
    case = ctx.case
    rng, model, src, srv, ops, eng = _start(ctx, 0xC097)
    eng.run(ops, 0, len(ops), srv.sock, case.conns, OPS_TIMEOUT, server=srv, depth=case.depth)
    ctx.log("source pattern written: %s" % eng.stats)
    _finish(ctx, srv, model, src, rng)
    ext = case.copy_dst_fmt
    # One of the three paths per case (the seed picks it; a budget run covers all three).
    if case.copy_path == "file-file":
        # A new raw file, or a new qcow2 image by extension.
        dst = os.path.join(ctx.tmp, "dst-file." + ext)
        t = time.monotonic()
        procs.run([ctx.exe, "copy", src, dst], timeout=900)
        ctx.log("copy file -> file (%s) in %.1fs" % (ext, time.monotonic() - t))
    elif case.copy_path == "nbd-file":
        s2 = ctx.server(src, case.fmt, "src-ro", ["--read-only"])
        s2.start()
        dst = os.path.join(ctx.tmp, "dst-nbd." + ext)
        t = time.monotonic()
        procs.run([ctx.exe, "copy", s2.uri(), dst, "--connections", str(rng.choice([1, 2, 4]))], timeout=900)
        s2.stop()
        ctx.log("copy nbd -> file (%s) in %.1fs" % (ext, time.monotonic() - t))
    else:
        # Into an existing empty image served by swiftnbd.
        dst = os.path.join(ctx.tmp, "dst-served." + ext)
        if ext == "raw":
            images.create_raw(dst, case.size)
        else:
            # copy zeroes the destination's holes, and zeroing an unallocated qcow2 range
            # writes L2 tables for all of it (as QEMU does): ~0.3 s per GiB with 64 KiB
            # clusters, minutes for 1 TiB. Big clusters keep a case within its bounds.
            procs.run(["qemu-img", "create", "-q", "-f", "qcow2", "-o",
                       "cluster_size=%d" % rng.choice([1 << 20, 2 << 20]), dst, str(case.size)],
                      timeout=120)
        s3 = ctx.server(dst, ext, "dst", ctx.cache_args() if ext == "qcow2" else [])
        s3.start()
        t = time.monotonic()
        procs.run([ctx.exe, "copy", src, s3.uri(), "--flush"], timeout=900)
        s3.stop()
        ctx.log("copy file -> nbd (%s) in %.1fs" % (ext, time.monotonic() - t))
    _verify_image(ctx, dst, ext, model, rng, os.path.basename(dst))


def run_case(case, exe, verbose=False, keep_on_failure=True):
    """Run one case; return (ok, error message, ctx)."""
    ctx = Ctx(case, exe, verbose)
    ok, err = False, None
    try:
        {"plain": run_plain, "crash": run_crash, "copy": run_copy}[case.kind](ctx)
        ok = True
    except (driver.CaseFailure, procs.ToolError) as e:
        err = str(e)
    except Exception as e:  # a bug in the tester or an unexpected library error
        import traceback
        err = "%s: %s\n%s" % (type(e).__name__, e, traceback.format_exc())
    except BaseException:   # Ctrl-C / SIGTERM: kill this case's servers, drop its files
        ctx.cleanup(keep=False)
        raise
    if not ok:
        ctx.report = ctx.server_report()
    ctx.cleanup(keep=(not ok) and keep_on_failure)
    return ok, err, ctx
