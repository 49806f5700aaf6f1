"""The op sequence of a case: a pure function of the seed and the case's geometry.

Ops are descriptors; write payloads are regenerated from a per-op data seed when the op
is sent, so a long sequence costs nothing until it runs."""

import random
from dataclasses import dataclass

from .matrix import KiB, MiB, l2_entries

WRITE, ZERO, TRIM, FLUSH, READ, BSTATUS = "write", "zero", "trim", "flush", "read", "block_status"


@dataclass
class Op:
    seq: int
    kind: str
    off: int = 0
    length: int = 0
    fua: bool = False
    no_hole: bool = False
    df: bool = False
    data_seed: int = 0
    data_kind: str = "random"   # random | zeros | sparse (random with zero blocks)

    def end(self):
        return self.off + self.length

    def describe(self):
        flags = [f for f, on in (("FUA", self.fua), ("NO_HOLE", self.no_hole), ("DF", self.df)) if on]
        s = "op#%d %s %d+%d" % (self.seq, self.kind.upper(), self.off, self.length)
        if flags:
            s += " [" + ",".join(flags) + "]"
        if self.kind == WRITE and self.data_kind != "random":
            s += " data=" + self.data_kind
        return s


def payload(op):
    """The bytes a WRITE op sends (deterministic from its data seed)."""
    n = op.length
    if op.data_kind == "zeros":
        return bytes(n)
    rng = random.Random(op.data_seed)
    data = rng.randbytes(n)
    if op.data_kind == "sparse":
        buf = bytearray(data)
        for p in range(0, n, 4096):
            if rng.random() < 0.5:
                buf[p:p + 4096] = bytes(min(4096, n - p))
        data = bytes(buf)
    return data


class Geometry:
    def __init__(self, size, cluster, extended_l2):
        self.size = size
        self.cluster = cluster or 64 * KiB
        # Guest bytes one L2 table maps: writes straddling these touch two tables.
        self.l2_span = self.cluster * l2_entries(self.cluster, bool(extended_l2))


def generate(case, seed_salt=0, write_budget=40 * MiB):
    """The ops of a case. Offsets: hot regions (including both ends of the disk), uniform
    over the whole disk (so a 4 TiB disk touches many L2 tables), and cluster/L2-table
    boundaries; each aligned to nothing, to 512 B or to the cluster."""
    rng = random.Random(case.seed * 1000003 + seed_salt)
    g = Geometry(case.size, case.cluster, case.extended_l2)
    hot = [0, max(0, g.size - 8 * MiB)] + [rng.randrange(0, g.size) for _ in range(3)]
    hot.append(min(g.size - 1, g.l2_span * rng.randint(1, max(1, g.size // g.l2_span))))
    weights = {WRITE: 34, ZERO: 9, TRIM: 7, FLUSH: 4, READ: 32, BSTATUS: 14}
    if case.kind == "copy":   # build a sparse pattern: mostly writes, spread out
        weights = {WRITE: 60, ZERO: 8, TRIM: 6, FLUSH: 2, READ: 14, BSTATUS: 10}
    kinds, w = zip(*weights.items())
    written = 0
    ops = []
    for seq in range(1, case.ops + 1):
        kind = rng.choices(kinds, w)[0]
        if kind == FLUSH:
            ops.append(Op(seq, FLUSH))
            continue
        r = rng.random()
        if r < 0.55:
            n = rng.randint(1, 4 * KiB)
        elif r < 0.85:
            n = rng.randint(4 * KiB, 128 * KiB)
        elif r < 0.97:
            n = rng.randint(128 * KiB, 1 * MiB)
        else:
            n = rng.randint(1 * MiB, 4 * MiB)
        if kind in (ZERO, TRIM) and rng.random() < 0.15:
            n = rng.randint(4 * MiB, 16 * MiB)     # metadata-only ranges can be big
        r = rng.random()
        if r < 0.45 or case.kind == "copy" and r < 0.75:
            off = rng.randrange(0, g.size)                      # anywhere
        elif r < 0.8:
            c = rng.choice(hot)
            off = c + rng.randint(-2 * MiB, 2 * MiB)            # hot region
        else:
            span = g.cluster if rng.random() < 0.6 else g.l2_span
            k = rng.randint(1, max(1, g.size // span))
            off = k * span - rng.randint(0, min(n, 2 * g.cluster))   # straddles a boundary
        a = rng.random()
        if a < 0.35:
            off -= off % 512
            n = max(512, n - n % 512)
        elif a < 0.6:
            off -= off % g.cluster
            n = max(g.cluster, n - n % g.cluster) if g.cluster <= 4 * MiB else n
        if kind == WRITE and written + n > write_budget:
            n = rng.randint(1, 4 * KiB)     # bound the data a case writes (and models)
        n = min(n, g.size)
        off = max(0, min(off, g.size - n))
        op = Op(seq, kind, off, n)
        if kind == WRITE:
            op.fua = rng.random() < 0.15
            op.data_seed = rng.getrandbits(64)
            op.data_kind = rng.choices(["random", "zeros", "sparse"], [85, 7, 8])[0]
            if n > 32 * MiB:
                op.length = n = 32 * MiB
            written += n
        elif kind == ZERO:
            op.no_hole = rng.random() < 0.5
            op.fua = rng.random() < 0.1
            if op.no_hole and n > 8 * MiB:
                op.length = 8 * MiB        # NO_HOLE writes real zeroes on raw: keep it bounded
        elif kind == TRIM:
            op.fua = rng.random() < 0.1
        elif kind == READ:
            op.length = min(n, 8 * MiB)
            op.df = op.length <= 64 * KiB and rng.random() < 0.3
        ops.append(op)
    if case.sweep:
        # Insert the burst at a random point; sequence numbers are renumbered after.
        at = rng.randint(0, len(ops))
        burst = []
        for _ in range(case.sweep):
            off = rng.randrange(0, max(1, g.size // 4096)) * 4096
            burst.append(Op(0, WRITE, off, min(4096, g.size - off), data_seed=rng.getrandbits(64)))
        ops[at:at] = burst
        for i, op in enumerate(ops):
            op.seq = i + 1
    return ops
