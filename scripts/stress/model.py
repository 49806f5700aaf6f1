"""Sparse reference model of the virtual disk.

The disk is a sorted list of non-overlapping segments [start, end) with a tuple of
candidate values each; bytes outside every segment are in their initial state (zero).
A candidate is an `Entry`: the op's sequence number, what it wrote (DATA bytes, ZERO or
UNDEF for trimmed bytes, which may read as anything), and for DATA the buffer plus the
disk offset of its first byte, so that splitting a segment never copies data.

Normal cases keep one candidate per segment (the latest value, which every read must
match). Crash cases keep every value written since the last point that made the bytes
durable (a FUA ack, or a FLUSH ack after the write's ack), because after a SIGKILL any
of them may be what the image holds; `make_durable` drops the older ones.
"""

import bisect
from collections import namedtuple

ZERO, DATA, UNDEF = 0, 1, 2
KIND_NAMES = {ZERO: "zero", DATA: "data", UNDEF: "undefined"}

Entry = namedtuple("Entry", "seq kind buf base")
INITIAL = Entry(0, ZERO, None, 0)

_ZEROS = bytes(4 << 20)


def is_zero(buf):
    """True if every byte of buf (bytes or memoryview) is zero, without big copies."""
    # memoryview == compares item by item; bytes == is one memcmp, so copy in chunks.
    mv = memoryview(buf)
    step = len(_ZEROS)
    for i in range(0, len(mv), step):
        part = mv[i:i + step]
        if part.tobytes() != (_ZEROS if len(part) == step else _ZEROS[:len(part)]):
            return False
    return True


def entry_bytes(entry, a, b):
    """The bytes an entry holds for disk range [a, b) (None for UNDEF)."""
    if entry.kind == DATA:
        return entry.buf[a - entry.base:b - entry.base]
    if entry.kind == ZERO:
        return _ZEROS[:b - a] if b - a <= len(_ZEROS) else bytes(b - a)
    return None


def entry_matches(entry, a, got):
    """Does `got` (the bytes read at disk offset a) equal what the entry holds there?"""
    if entry.kind == UNDEF:
        return True
    if entry.kind == ZERO:
        return is_zero(got)
    return entry.buf[a - entry.base:a - entry.base + len(got)] == (
        got if isinstance(got, bytes) else got.tobytes())


class Model:
    def __init__(self, size, track_candidates=False):
        self.size = size
        self.track = track_candidates
        self.starts = []  # segment starts, for bisect
        self.segs = []    # [start, end, entries]

    # -- structure -------------------------------------------------------------------
    def _split(self, pos):
        """Make `pos` a segment boundary; return the index of the first segment >= pos."""
        i = bisect.bisect_right(self.starts, pos) - 1
        if i >= 0:
            s, e, ent = self.segs[i]
            if s < pos < e:
                self.segs[i] = [s, pos, ent]
                self.segs.insert(i + 1, [pos, e, ent])
                self.starts.insert(i + 1, pos)
                return i + 1
            if pos >= e:
                return i + 1
            return i
        return 0

    def _cover(self, a, b):
        """Split at a and b and fill gaps in [a, b) with INITIAL segments; return (i, j)."""
        i = self._split(a)
        j = self._split(b)
        pos, k = a, i
        while pos < b:
            if k < j and self.segs[k][0] == pos:
                pos = self.segs[k][1]
                k += 1
                continue
            nxt = self.segs[k][0] if k < j else b
            self.segs.insert(k, [pos, nxt, (INITIAL,)])
            self.starts.insert(k, pos)
            j += 1
            k += 1
            pos = nxt
        return i, j

    # -- updates ---------------------------------------------------------------------
    def apply(self, a, b, entry):
        """An op wrote `entry` over [a, b)."""
        if b <= a:
            return
        i, j = self._cover(a, b)
        if not self.track:
            del self.segs[i:j]
            del self.starts[i:j]
            self.segs.insert(i, [a, b, (entry,)])
            self.starts.insert(i, a)
            return
        for k in range(i, j):
            self.segs[k][2] = self.segs[k][2] + (entry,)

    def make_durable(self, a, b, seq):
        """The op `seq` over [a, b) is durable: older candidates there cannot come back."""
        if not self.track or b <= a:
            return
        i = bisect.bisect_right(self.starts, a) - 1
        i = max(i, 0)
        for k in range(i, len(self.segs)):
            s, e, ent = self.segs[k]
            if s >= b:
                break
            if e <= a:
                continue
            if s < a or e > b:
                # A boundary inside the segment: split so only [a, b) changes.
                self._split(a)
                self._split(b)
                return self.make_durable(a, b, seq)
            kept = tuple(x for x in ent if x.seq >= seq)
            self.segs[k][2] = kept if kept else ent[-1:]

    def set_actual(self, a, data):
        """Replace [a, a+len) by what the image was seen to hold (after a crash or to pin
        down trimmed bytes at the end): the single durable candidate from now on."""
        b = a + len(data)
        if b <= a:
            return
        data = bytes(data)
        entry = Entry(0, ZERO, None, 0) if is_zero(data) else Entry(0, DATA, data, a)
        i, j = self._cover(a, b)
        del self.segs[i:j]
        del self.starts[i:j]
        self.segs.insert(i, [a, b, (entry,)])
        self.starts.insert(i, a)

    # -- queries ---------------------------------------------------------------------
    def pieces(self, a, b):
        """[(start, end, entries)] covering [a, b) exactly, gaps as INITIAL."""
        out = []
        i = max(bisect.bisect_right(self.starts, a) - 1, 0)
        pos = a
        for k in range(i, len(self.segs)):
            s, e, ent = self.segs[k]
            if s >= b:
                break
            if e <= pos:
                continue
            if s > pos:
                out.append((pos, s, (INITIAL,)))
            out.append((max(s, pos), min(e, b), ent))
            pos = min(e, b)
        if pos < b:
            out.append((pos, b, (INITIAL,)))
        return out

    def check_latest(self, a, got):
        """Check bytes read at a against the latest value; return None or a message."""
        for s, e, ent in self.pieces(a, a + len(got)):
            last = ent[-1]
            part = memoryview(got)[s - a:e - a]
            if not entry_matches(last, s, part):
                return self._mismatch(s, e, part, (last,), "latest")
        return None

    def check_candidates(self, a, got):
        """After a crash: every byte must equal one of its candidates. Whole pieces are
        tried first; a piece that matches no single candidate is checked per 512-byte
        block and then per byte (a torn write may mix candidates)."""
        for s, e, ent in self.pieces(a, a + len(got)):
            part = memoryview(got)[s - a:e - a]
            if any(entry_matches(x, s, part) for x in ent):
                continue
            pos = s
            while pos < e:
                blk_end = min(e, (pos // 512 + 1) * 512)
                blk = part[pos - s:blk_end - s]
                if not any(entry_matches(x, pos, blk) for x in ent):
                    for off in range(pos, blk_end):
                        byte = part[off - s:off - s + 1]
                        if not any(entry_matches(x, off, byte) for x in ent):
                            return self._mismatch(off, blk_end, part[off - s:blk_end - s], ent,
                                                  "any candidate")
                pos = blk_end
        return None

    def zero_ok(self, a, b):
        """May [a, b) read as zero according to the latest values? (for NBD_STATE_ZERO)"""
        for s, e, ent in self.pieces(a, b):
            last = ent[-1]
            if last.kind == DATA and not is_zero(entry_bytes(last, s, e)):
                for off in range(s, e):
                    if entry_bytes(last, off, off + 1) != b"\0":
                        return off
        return None

    @staticmethod
    def _mismatch(s, e, part, ents, what):
        """Describe a mismatch from its first differing byte (against the latest value)."""
        want = entry_bytes(ents[-1], s, e)
        first = s
        if want is not None:
            got_all = bytes(part)
            for i in range(len(got_all)):
                if got_all[i] != want[i]:
                    first = s + i
                    break
        k = first - s
        got = bytes(part[k:k + 16]).hex()
        exp = []
        for x in ents[-4:]:
            eb = entry_bytes(x, first, min(e, first + 16))
            exp.append("op#%d %s %s" % (x.seq, KIND_NAMES[x.kind], eb.hex() if eb is not None else "*"))
        return "first wrong byte at offset %d (piece %d+%d) against %s: read %s…, expected %s" % (
            first, s, e - s, what, got, " | ".join(exp))

    def ranges(self, max_len=4 << 20):
        """Every segment range, cut into pieces of at most max_len (for read-backs)."""
        for s, e, _ in list(self.segs):
            for p in range(s, e, max_len):
                yield p, min(e, p + max_len)

    def data_bytes(self):
        return sum(e - s for s, e, ent in self.segs if ent[-1].kind != ZERO)

    def write_raw(self, path):
        """Write the latest values as a sparse raw file (only data extents written)."""
        with open(path, "wb") as f:
            f.truncate(self.size)
            for s, e, ent in self.segs:
                last = ent[-1]
                if last.kind == UNDEF:
                    raise RuntimeError("model still has undefined bytes at %d+%d" % (s, e - s))
                if last.kind == DATA:
                    f.seek(s)
                    f.write(entry_bytes(last, s, e))
