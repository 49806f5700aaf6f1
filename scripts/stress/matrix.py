"""The test matrix: a case (image layout, server options, mode) is a pure function of its
seed, and a budget run picks seeds so that every value of every dimension comes up."""

import random
from dataclasses import dataclass, field

KiB, MiB, GiB, TiB = 1 << 10, 1 << 20, 1 << 30, 1 << 40

KINDS = ["plain", "crash", "copy"]
FORMATS = ["qcow2", "raw"]
CLUSTERS = [1 << b for b in range(9, 22)]           # 512 B .. 2 MiB
REFCOUNTS = [1, 2, 4, 8, 16, 32, 64]
SIZE_CLASSES = {"small": (64 * MiB, 1 * GiB), "medium": (1 * GiB, 64 * GiB),
                "large": (64 * GiB, 1 * TiB), "huge": (1 * TiB, 4 * TiB)}
BACKINGS = ["none", "raw", "qcow2", "qcow2-compressed"]
CACHES = ["default", "tiny"]
CONNS = [1, 2, 4, 8]
DEPTHS = [1, 4, 16]      # requests in flight per connection (1: sync calls; more: libnbd aio)
COMPATS = ["1.1", "0.10"]
COPY_PATHS = ["file-file", "nbd-file", "file-nbd"]
L1_MAX_BYTES = 32 * MiB   # QEMU refuses L1 tables above 32 MiB


def l2_entries(cluster, extended):
    return cluster // (16 if extended else 8)


def max_size(cluster, extended):
    """Largest virtual size QEMU accepts for this geometry (L1 <= 32 MiB)."""
    return (L1_MAX_BYTES // 8) * l2_entries(cluster, extended) * cluster


def human(n):
    for unit, v in (("T", TiB), ("G", GiB), ("M", MiB), ("K", KiB)):
        if n >= v and n % v == 0:
            return "%d%s" % (n // v, unit)
    for unit, v in (("T", TiB), ("G", GiB), ("M", MiB)):
        if n >= v:
            return "%d(%.2f%s)" % (n, n / v, unit)
    return str(n)


@dataclass
class Case:
    seed: int
    kind: str
    fmt: str
    size: int
    size_class: str
    cluster: int = None
    extended_l2: bool = None
    refcount_bits: int = None
    compat: str = None
    backing: str = "none"
    base_fmt_cluster: int = None
    cache: str = "default"
    conns: int = 1
    ops: int = 0
    kills: int = 0
    restart: bool = False
    copy_dst_fmt: str = None
    copy_path: str = None
    sweep: int = 0
    depth: int = 1
    notes: list = field(default_factory=list)

    def describe(self):
        parts = ["kind=" + self.kind, "fmt=" + self.fmt, "size=" + human(self.size)]
        if self.fmt == "qcow2":
            parts += ["cluster=" + human(self.cluster), "extended_l2=" + ("on" if self.extended_l2 else "off"),
                      "refcount_bits=%d" % self.refcount_bits, "compat=" + self.compat,
                      "backing=" + self.backing, "cache=" + self.cache]
            if self.backing != "none" and self.base_fmt_cluster:
                parts.append("base_cluster=" + human(self.base_fmt_cluster))
        parts += ["conns=%d" % self.conns, "depth=%d" % self.depth, "ops=%d" % self.ops]
        if self.kind == "crash":
            parts.append("kills=%d" % self.kills)
        if self.kind == "copy":
            parts.append("copy=%s dst_fmt=%s" % (self.copy_path, self.copy_dst_fmt))
        if self.sweep:
            parts.append("sweep=%d" % self.sweep)
        if self.restart:
            parts.append("restart=yes")
        return " ".join(parts + self.notes)

    def coverage(self):
        """The (dimension, value) pairs this case exercises."""
        cov = {("kind", self.kind), ("fmt", self.fmt), ("size", self.size_class),
               ("conns", self.conns), ("sweep", bool(self.sweep)), ("depth", self.depth)}
        if self.fmt == "qcow2":
            cov |= {("cluster", self.cluster), ("extended_l2", self.extended_l2),
                    ("refcount", self.refcount_bits), ("compat", self.compat),
                    ("backing", self.backing), ("cache", self.cache)}
        return cov


def all_coverage():
    cov = {("kind", k) for k in KINDS} | {("fmt", f) for f in FORMATS}
    cov |= {("size", s) for s in SIZE_CLASSES} | {("conns", c) for c in CONNS}
    cov |= {("cluster", c) for c in CLUSTERS} | {("extended_l2", b) for b in (True, False)}
    cov |= {("refcount", r) for r in REFCOUNTS} | {("compat", c) for c in COMPATS}
    cov |= {("backing", b) for b in BACKINGS} | {("cache", c) for c in CACHES}
    cov |= {("sweep", b) for b in (True, False)} | {("depth", d) for d in DEPTHS}
    # The copy path (file-file, nbd-file, file-nbd) and destination format are drawn at
    # random, not covered per round: a copy case costs more than the others and a
    # 2-minute run can afford one.
    return cov


def est_cost(case):
    """Rough seconds a case takes (debug build, 2 shared cores; fitted to measured runs),
    so that a budget run reaches full coverage with cheap cases."""
    cost = {"plain": 5, "crash": 9, "copy": 12}[case.kind]
    if case.fmt == "qcow2" and case.cluster <= 1 * KiB:
        cost *= 2.5
    if case.size_class == "huge":
        cost += 4
    if case.fmt == "qcow2" and case.cluster >= 1 * MiB:
        cost += 3
    cost += case.sweep / 200
    return cost


def case_from_seed(seed):
    rng = random.Random(seed)
    kind = rng.choices(KINDS, weights=[5, 3, 2])[0]
    fmt = rng.choices(FORMATS, weights=[4, 1])[0]
    size_class = rng.choice(list(SIZE_CLASSES))
    c = Case(seed=seed, kind=kind, fmt=fmt, size=0, size_class=size_class)
    c.conns = rng.choice(CONNS)
    # Pick every dimension even when it does not apply, so the draw stays stable.
    cluster = rng.choice(CLUSTERS)
    extended = rng.random() < 0.5
    refcount = rng.choice(REFCOUNTS)
    compat = rng.choices(COMPATS, weights=[4, 1])[0]
    backing = rng.choice(BACKINGS)
    base_cluster = rng.choice(CLUSTERS[3:])
    cache = rng.choice(CACHES)
    lo, hi = SIZE_CLASSES[size_class]
    size_draw = rng.random()
    c.restart = rng.random() < 0.3
    c.copy_dst_fmt = rng.choice(["raw", "qcow2"])
    c.copy_path = rng.choice(COPY_PATHS)
    if kind == "copy":
        size_class, (lo, hi) = "huge", (1 * TiB, 2 * TiB)
        c.size_class = size_class
        c.conns = min(c.conns, 4)
        backing = "none"
        c.restart = False
    if fmt == "qcow2":
        if compat == "0.10":
            refcount, extended = 16, False
        if extended and cluster < 16 * KiB:
            extended = False
        if kind == "copy":
            # 1 TiB needs at least 2 KiB clusters; copy cases are about copy, and a 1 TiB
            # image with tiny clusters makes every whole-disk walk slow: 64 KiB and up.
            cluster = max(cluster, 64 * KiB)
        hi = min(hi, max_size(cluster, extended))
        lo = min(lo, hi)
        c.cluster, c.extended_l2, c.refcount_bits, c.compat = cluster, extended, refcount, compat
        c.backing, c.cache = backing, cache
        if backing != "none":
            # A huge base with small clusters makes qemu-img compare crawl: >= 64 KiB there.
            c.base_fmt_cluster = base_cluster if size_class in ("small", "medium") else max(base_cluster, 64 * KiB)
    # Log-uniform size inside the class, rounded to 512 bytes (and sometimes not to a
    # cluster, so the last cluster is partial).
    import math
    size = int(math.exp(math.log(lo) + size_draw * (math.log(hi) - math.log(lo))))
    size = max(64 * MiB, min(hi, size - size % 512))
    if fmt == "qcow2" and size_draw < 0.5:
        size -= size % cluster
    c.size = size
    if fmt == "qcow2" and size > max_size(c.cluster, c.extended_l2):
        c.size = max_size(c.cluster, c.extended_l2)
    if kind == "plain":
        c.ops = rng.randint(800, 2000)
    elif kind == "crash":
        c.ops = rng.randint(800, 1600)
        c.kills = rng.randint(3, 5)
    else:
        c.ops = rng.randint(300, 600)
    if fmt == "qcow2" and c.cluster <= 1 * KiB:
        c.ops //= 2     # every large request is thousands of clusters here
    # A burst of 4 KiB writes at random places over the whole disk, like fio randwrite:
    # on a big disk each lands in its own L2 table, which is what fills metadata caches.
    sweep_draw = rng.random()
    if kind != "copy" and sweep_draw < 0.4:
        c.sweep = int(1500 + 3500 * rng.random())
    # Drawn last so that the fields above stay what they were for seeds from before.
    c.depth = rng.choice(DEPTHS)
    return c


def pick_seeds(master_seed):
    """Endless seeds from the master seed; each one the best of 256 candidates by (new pairs)^2 /
    estimated seconds, new pairs being (dimension, value) pairs not seen since the last
    full round."""
    rng = random.Random(master_seed)
    want = all_coverage()
    seen = set()
    while True:
        best, best_score = None, -1
        for _ in range(256):
            s = rng.getrandbits(32)
            c = case_from_seed(s)
            new = len(c.coverage() & (want - seen))
            score = new * new / est_cost(c)
            if score > best_score:
                best, best_score = s, score
        case = case_from_seed(best)
        seen |= case.coverage()
        if want <= seen:
            seen = set()
        yield best
