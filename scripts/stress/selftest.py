"""Checks of the tester itself that need no server (`scripts/stress.sh --self-test`): the
model against a plain bytearray, the crash candidate rules, seeds being replayable, and
the matrix only producing geometries QEMU accepts. Run before trusting a change here."""

import random

from . import model as M
from .matrix import KiB, TiB, case_from_seed, max_size
from .workload import WRITE, generate


def _model_vs_bytearray():
    size = 1 << 20
    rng = random.Random(1)
    m, ref = M.Model(size), bytearray(size)
    for seq in range(1, 3000):
        a = rng.randrange(size)
        b = min(size, a + rng.randint(1, 5000))
        if rng.random() < 0.6:
            d = rng.randbytes(b - a)
            m.apply(a, b, M.Entry(seq, M.DATA, d, a))
            ref[a:b] = d
        else:
            m.apply(a, b, M.Entry(seq, M.ZERO, None, 0))
            ref[a:b] = bytes(b - a)
        if seq % 300 == 0:
            assert m.check_latest(0, bytes(ref)) is None, "model disagrees with bytearray"
            bad = bytearray(ref)
            bad[rng.randrange(size)] ^= 0x40
            assert m.check_latest(0, bytes(bad)) is not None, "a flipped byte went unnoticed"
            for p in range(0, size, 4096):
                z = m.zero_ok(p, p + 4096)
                assert (z is None) == (ref[p:p + 4096] == bytes(4096)), "zero_ok disagrees"
    # Trimmed bytes accept anything; set_actual pins them.
    m.apply(100, 200, M.Entry(9999, M.UNDEF, None, 0))
    ref[100:200] = b"\x55" * 100
    assert m.check_latest(0, bytes(ref)) is None
    m.set_actual(100, b"\x55" * 100)
    ref[150] = 0
    assert m.check_latest(0, bytes(ref)) is not None


def _crash_candidates():
    m = M.Model(1 << 16, track_candidates=True)
    a, b = b"a" * 100, b"b" * 100
    m.apply(0, 100, M.Entry(1, M.DATA, a, 0))
    m.apply(50, 150, M.Entry(2, M.DATA, b, 50))
    # Nothing durable yet: old (zero), op 1 and op 2 are all possible, even mixed.
    assert m.check_candidates(0, bytes(150)) is None
    assert m.check_candidates(0, b"a" * 50 + b"ab" * 25 + bytes(50)) is None
    m.make_durable(0, 100, 1)        # op 1 acknowledged before a flush ack
    assert m.check_candidates(0, b"a" * 50 + bytes(100)) is not None, "lost a flushed write"
    assert m.check_candidates(0, b"a" * 100 + bytes(50)) is None
    assert m.check_candidates(0, b"a" * 50 + b"b" * 100) is None
    m.make_durable(50, 150, 2)
    assert m.check_candidates(0, b"a" * 100 + b"b" * 50) is not None, "kept a superseded value"
    m.apply(0, 10, M.Entry(3, M.UNDEF, None, 0))
    assert m.check_candidates(0, b"?" * 10 + b"a" * 40 + b"b" * 100) is None


def _replayable():
    for seed in (1, 2, 3, 12345, 2 ** 32 - 1):
        c1, c2 = case_from_seed(seed), case_from_seed(seed)
        assert c1.describe() == c2.describe()
        o1, o2 = generate(c1), generate(c2)
        assert [(o.kind, o.off, o.length, o.data_seed) for o in o1] == \
               [(o.kind, o.off, o.length, o.data_seed) for o in o2]
        assert all(0 <= o.off and o.end() <= c1.size for o in o1 if o.kind != "flush")
        assert all(o.length > 0 for o in o1 if o.kind == WRITE)


def _matrix_valid():
    rng = random.Random(7)
    for _ in range(3000):
        c = case_from_seed(rng.getrandbits(32))
        assert 64 << 20 <= c.size <= 4 * TiB, c.describe()
        if c.kind == "copy":
            assert c.size >= 1 * TiB, c.describe()
        if c.fmt == "qcow2":
            assert c.size <= max_size(c.cluster, c.extended_l2), c.describe()
            assert not c.extended_l2 or c.cluster >= 16 * KiB, c.describe()
            assert c.compat == "1.1" or (c.refcount_bits == 16 and not c.extended_l2), c.describe()


def main():
    for name, fn in (("model vs bytearray", _model_vs_bytearray), ("crash candidates", _crash_candidates),
                     ("seeds replay", _replayable), ("matrix within QEMU limits", _matrix_valid)):
        fn()
        print("self-test ok: " + name)
    return 0
