"""Creating the images of a case with qemu-img/qemu-io, and the end-of-case checks
(qemu-img check, qemu-img compare against the model written as a sparse raw file)."""

import json
import os
import random

from . import model as M
from . import procs
from .matrix import KiB, MiB

QEMU_TIMEOUT = 600


def create_qcow2(path, case, size=None, backing=None, backing_fmt=None, cluster=None):
    opts = ["cluster_size=%d" % (cluster or case.cluster)]
    if cluster is None:
        opts.append("refcount_bits=%d" % case.refcount_bits)
        opts.append("compat=" + case.compat)
        if case.compat != "0.10":
            opts.append("extended_l2=" + ("on" if case.extended_l2 else "off"))
    args = ["qemu-img", "create", "-q", "-f", "qcow2", "-o", ",".join(opts)]
    if backing:
        args += ["-b", backing, "-F", backing_fmt]
    args += [path, str(size or case.size)]
    procs.run(args, timeout=QEMU_TIMEOUT)


def create_raw(path, size):
    with open(path, "wb") as f:
        f.truncate(size)


def make_base(case, tmp, model, rng):
    """Backing file with random data at a few places, written by qemu-io (some of it
    compressed for qcow2-compressed); the model starts from the same content. Returns
    (path, fmt)."""
    fmt = "raw" if case.backing == "raw" else "qcow2"
    cluster = case.base_fmt_cluster or 64 * KiB
    # Sometimes shorter than the overlay: beyond its end the overlay reads zeroes.
    size = case.size if rng.random() < 0.6 else max(MiB, (case.size // 2) - (case.size // 2) % 512)
    path = os.path.join(tmp, "base." + fmt)
    if fmt == "raw":
        create_raw(path, size)
    else:
        procs.run(["qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=%d" % cluster,
                   path, str(size)], timeout=QEMU_TIMEOUT)
    cmds = []
    src = os.path.join(tmp, "pattern.bin")
    pattern = random.Random(rng.getrandbits(64)).randbytes(4 * MiB)
    with open(src, "wb") as f:
        f.write(pattern)
    # Places: start, end, and a few random spots; lengths up to 4 MiB.
    spots = [0, max(0, size - 4 * MiB)] + [rng.randrange(0, size) for _ in range(6)]
    for off in spots:
        n = rng.choice([cluster, 2 * cluster, rng.randint(1, 4 * MiB)])
        compressed = case.backing == "qcow2-compressed" and rng.random() < 0.7
        if compressed:
            off -= off % cluster
            n = max(cluster, n - n % cluster)
        n = min(n, 4 * MiB, size - off)
        if n <= 0 or (compressed and (n % cluster or off % cluster)):
            continue
        # qemu-io -s repeats the pattern file from its start for the whole write.
        cmds += ["-c", "write %s -q -s %s %d %d" % ("-c" if compressed else "", src, off, n)]
        model.apply(off, off + n, M.Entry(0, M.DATA, pattern[:n], off))
    if cmds:
        procs.run(["qemu-io", "-f", fmt] + cmds + [path], timeout=QEMU_TIMEOUT)
    return path, fmt, size


def check(path, allow_leaks=False):
    """qemu-img check: must be clean, or (after a crash) have only leaked clusters.
    Returns a short summary; raises on anything else."""
    rc, out, err = procs.run(["qemu-img", "check", "--output=json", "-f", "qcow2", path],
                             timeout=QEMU_TIMEOUT, ok=None)
    try:
        info = json.loads(out)
    except ValueError:
        raise procs.ToolError("qemu-img check exited %d without JSON: %s" % (rc, (err or out)[-1500:]))
    corrupt = info.get("corruptions", 0)
    leaks = info.get("leaks", 0)
    errors = info.get("check-errors", 0)
    bad = corrupt or errors or (leaks and not allow_leaks) or rc not in ((0, 3) if allow_leaks else (0,))
    if rc == 3 and not leaks:
        bad = True
    if bad:
        raise procs.ToolError("qemu-img check exited %d: corruptions=%s leaks=%s check-errors=%s %s" % (
            rc, corrupt, leaks, errors, err.strip()[-1500:]))
    return "leaks=%d" % leaks if leaks else "clean"


def repair_leaks(path):
    procs.run(["qemu-img", "check", "-q", "-r", "leaks", "-f", "qcow2", path],
              timeout=QEMU_TIMEOUT, ok=(0,))


def compare(model, tmp, image, fmt):
    """qemu-img compare of the model (a sparse raw file) and the image (following its
    backing chain)."""
    ref = os.path.join(tmp, "model.raw")
    model.write_raw(ref)
    rc, out, err = procs.run(["qemu-img", "compare", "-f", "raw", "-F", fmt, ref, image],
                             timeout=QEMU_TIMEOUT, ok=None)
    os.unlink(ref)
    if rc != 0:
        raise procs.ToolError("qemu-img compare model vs %s exited %d: %s" % (
            os.path.basename(image), rc, (out + err).strip()[-1500:]))
