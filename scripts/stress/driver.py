"""Runs ops against the server over several libnbd connections, one thread each, and
checks every reply against the model.

Serializability: ops are dispatched strictly in sequence order, and an op waits until no
in-flight op overlaps its range (a range lock). Overlapping ops therefore reach the server
in sequence order and the model can apply each write when it is dispatched; ops that do
not overlap still run concurrently on different connections, which is what exercises the
server's concurrent allocation paths."""

import random
import threading
import time

import nbd

from . import aiobuf
from . import model as M
from .workload import WRITE, ZERO, TRIM, FLUSH, READ, BSTATUS, payload

STATE_HOLE, STATE_ZERO = 1, 2
BUSY = object()   # _dispatch(block=False): the next op's range is in flight


class CaseFailure(Exception):
    pass


def connect(sock):
    h = nbd.NBD()
    h.add_meta_context("base:allocation")
    h.connect_unix(sock)
    return h


def close(h):
    """Polite NBD_CMD_DISC; libnbd 1.14's Python handle has no close(): the connection
    closes when the handle is garbage-collected."""
    try:
        h.shutdown()
    except nbd.Error:
        pass


class Engine:
    def __init__(self, model, log, track=False):
        self.model = model
        self.log = log
        self.track = track
        self.cv = threading.Condition()
        self.stats = {}

    # -- one run of ops[start:stop] ----------------------------------------------------
    def run(self, ops, start, stop, sock, conns, timeout, kill_at=None, server=None,
            rng=None, depth=1):
        """Run ops[start:stop]. With kill_at, SIGKILL the server a moment after op index
        kill_at is dispatched (other requests are then in flight) and return the index of
        the first op not dispatched."""
        self.ops, self.next, self.stop = ops, start, stop
        self.depth = depth
        self.inflight = []          # (a, b) ranges in flight
        self.failure = None
        self.killed = False
        self.pending = []           # acked write-likes not yet durable: (seq, a, b)
        self.kill_at, self.server = kill_at, server
        self.timer = None
        handles = [connect(sock) for _ in range(conns)]
        h0 = handles[0]
        for what, ok in (("base:allocation", h0.can_meta_context("base:allocation")),
                         ("flush", h0.can_flush()), ("trim", h0.can_trim()),
                         ("write zeroes", h0.can_zero()), ("FUA", h0.can_fua())):
            if not ok:
                raise CaseFailure("server does not offer %s" % what)
        if conns > 1 and not h0.can_multi_conn():
            raise CaseFailure("server does not offer multi-conn")
        threads = [threading.Thread(target=self._worker, args=(h, i), daemon=True)
                   for i, h in enumerate(handles)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + timeout
        for t in threads:
            t.join(max(0.1, deadline - time.monotonic()))
        if any(t.is_alive() for t in threads):
            with self.cv:
                self.failure = self.failure or "ops did not finish within %ss (server hung?); in flight: %s" % (
                    timeout, self.inflight)
            if server is not None:
                server.signal_kill_nowait()    # unblocks the stuck calls
            for t in threads:
                t.join(30)
        if self.timer is not None:
            # A kill still pending must not hit the next server process.
            self.timer.cancel()
            self.timer.join(5)
        if not self.killed:
            for h in handles:
                close(h)
        del handles, h0, threads
        if self.failure:
            raise CaseFailure(self.failure)
        return self.next

    def _fail(self, msg):
        with self.cv:
            if not self.failure:
                self.failure = msg
            self.cv.notify_all()

    def _overlaps(self, a, b):
        return any(a < y and x < b for x, y in self.inflight)

    def _dispatch(self, block=True):
        """Next op in order once its range is free; (None, None) when done, failed or
        killed; with block=False, (BUSY, None) instead of waiting for a busy range (an aio
        worker must keep polling: the range may be held by its own request)."""
        with self.cv:
            while True:
                if self.failure or self.killed or self.next >= self.stop:
                    return None, None
                op = self.ops[self.next]
                rng = (op.off, op.end()) if op.kind != FLUSH else (0, 0)
                if op.kind == FLUSH or not self._overlaps(*rng):
                    break
                if not block:
                    return BUSY, None
                self.cv.wait(1.0)
            idx = self.next
            self.next += 1
            self.inflight.append(rng)
            self.stats["max_in_flight"] = max(self.stats.get("max_in_flight", 0), len(self.inflight))
            snap = None
            if op.kind == WRITE:
                data = payload(op)
                if op.data_kind == "zeros":
                    self.model.apply(op.off, op.end(), M.Entry(op.seq, M.ZERO, None, 0))
                else:
                    self.model.apply(op.off, op.end(), M.Entry(op.seq, M.DATA, data, op.off))
                snap = data
            elif op.kind == ZERO:
                self.model.apply(op.off, op.end(), M.Entry(op.seq, M.ZERO, None, 0))
            elif op.kind == TRIM:
                self.model.apply(op.off, op.end(), M.Entry(op.seq, M.UNDEF, None, 0))
            elif op.kind == FLUSH:
                snap, self.pending = self.pending, []
            if self.kill_at is not None and idx == self.kill_at and self.server is not None:
                # Kill a little later, while this op and others are in flight.
                self.timer = threading.Timer(random.random() * 0.02, self._kill)
                self.timer.daemon = True
                self.timer.start()
            return op, (rng, snap)

    def _kill(self):
        with self.cv:
            self.killed = True
            self.cv.notify_all()
        self.server.signal_kill_nowait()

    def _done(self, op, rng, durable=None, pending=None, putback=None):
        with self.cv:
            self.inflight.remove(rng)
            self.stats[op.kind] = self.stats.get(op.kind, 0) + 1
            if self.track:
                if durable is not None:
                    self.model.make_durable(*durable)
                if pending is not None:
                    self.pending.append(pending)
                for seq, a, b in putback or ():
                    self.model.make_durable(a, b, seq)
            self.cv.notify_all()

    def _worker(self, h, wid):
        if self.depth > 1:
            return self._worker_aio(h, wid)
        while True:
            op, ctx = self._dispatch()
            if op is None:
                return
            rng, snap = ctx
            try:
                self._execute(h, op, rng, snap)
            except nbd.Error as e:
                with self.cv:
                    self.inflight.remove(rng)
                    killed = self.killed
                    self.cv.notify_all()
                if killed:
                    return
                self._fail("%s on connection %d failed: %s" % (op.describe(), wid, e))
                return
            except CaseFailure as e:
                with self.cv:
                    if rng in self.inflight:
                        self.inflight.remove(rng)
                self._fail("%s on connection %d: %s" % (op.describe(), wid, e))
                return

    def _worker_aio(self, h, wid):
        """Up to `depth` requests in flight on this connection (libnbd aio), so the server
        sees pipelined requests and may reply out of order. BLOCK_STATUS stays a sync call
        (libnbd keeps the other requests of the handle moving while it waits)."""
        mine = []   # [cookie, op, rng, snap, buffer]
        while True:
            still = []
            for item in mine:
                cookie, op, rng, snap, buf = item
                try:
                    done = h.aio_command_completed(cookie)
                    if done:
                        self._complete_aio(op, rng, snap, buf)
                except nbd.Error as e:
                    return self._worker_error(op, rng, wid, e, mine)
                except CaseFailure as e:
                    return self._worker_check_failed(op, rng, wid, e)
                if not done:
                    still.append(item)
            mine = still
            if len(mine) < self.depth:
                op, ctx = self._dispatch(block=not mine)
                if op is None:
                    if not mine or self.failure or self.killed:
                        return
                elif op is not BUSY:
                    rng, snap = ctx
                    try:
                        item = self._issue_aio(h, op, rng, snap)
                    except nbd.Error as e:
                        return self._worker_error(op, rng, wid, e, mine)
                    except CaseFailure as e:
                        return self._worker_check_failed(op, rng, wid, e)
                    if item is not None:
                        mine.append(item)
                    continue
            if mine:
                try:
                    h.poll(50)
                except nbd.Error as e:
                    return self._worker_error(mine[0][1], mine[0][2], wid, e, mine[1:])

    def _worker_error(self, op, rng, wid, e, others):
        with self.cv:
            for r in [rng] + [x[2] for x in others if x[1] is not op]:
                if r in self.inflight:
                    self.inflight.remove(r)
            killed = self.killed
            self.cv.notify_all()
        if not killed:
            self._fail("%s on connection %d failed: %s" % (op.describe(), wid, e))

    def _worker_check_failed(self, op, rng, wid, e):
        with self.cv:
            if rng in self.inflight:
                self.inflight.remove(rng)
        self._fail("%s on connection %d: %s" % (op.describe(), wid, e))

    def _issue_aio(self, h, op, rng, snap):
        fua = nbd.CMD_FLAG_FUA if op.fua else 0
        buf = None
        if op.kind == WRITE:
            m, view = aiobuf.take(len(snap))
            view[:] = snap
            buf = m
            cookie = h.aio_pwrite(nbd.Buffer.from_buffer(view), op.off, flags=fua)
        elif op.kind == ZERO:
            cookie = h.aio_zero(op.length, op.off, flags=fua | (nbd.CMD_FLAG_NO_HOLE if op.no_hole else 0))
        elif op.kind == TRIM:
            cookie = h.aio_trim(op.length, op.off, flags=fua)
        elif op.kind == FLUSH:
            try:
                cookie = h.aio_flush()
            except nbd.Error:
                with self.cv:
                    self.pending.extend(snap)
                raise
        elif op.kind == READ:
            m, view = aiobuf.take(op.length)
            buf = m
            cookie = h.aio_pread(nbd.Buffer.from_buffer(view), op.off)
        else:
            self._block_status(h, op)
            self._done(op, rng)
            return None
        return [cookie, op, rng, snap, buf]

    def _complete_aio(self, op, rng, snap, buf):
        dur = (op.off, op.end(), op.seq)
        if op.kind == WRITE:
            aiobuf.give_back(buf)
        if op.kind in (WRITE, ZERO, TRIM):
            self._done(op, rng, durable=dur if op.fua else None,
                       pending=None if op.fua else (op.seq, op.off, op.end()))
        elif op.kind == FLUSH:
            self._done(op, rng, putback=list(snap))
        elif op.kind == READ:
            got = buf[:op.length]       # mmap slice: a copy
            aiobuf.give_back(buf)
            with self.cv:
                err = self.model.check_latest(op.off, got)
            if err:
                raise CaseFailure("READ returned wrong data: " + err)
            self._done(op, rng)

    def _execute(self, h, op, rng, snap):
        dur = (op.off, op.end(), op.seq)
        if op.kind == WRITE:
            h.pwrite(snap, op.off, nbd.CMD_FLAG_FUA if op.fua else 0)
            self._done(op, rng, durable=dur if op.fua else None,
                       pending=None if op.fua else (op.seq, op.off, op.end()))
        elif op.kind == ZERO:
            flags = (nbd.CMD_FLAG_NO_HOLE if op.no_hole else 0) | (nbd.CMD_FLAG_FUA if op.fua else 0)
            h.zero(op.length, op.off, flags)
            self._done(op, rng, durable=dur if op.fua else None,
                       pending=None if op.fua else (op.seq, op.off, op.end()))
        elif op.kind == TRIM:
            h.trim(op.length, op.off, nbd.CMD_FLAG_FUA if op.fua else 0)
            self._done(op, rng, durable=dur if op.fua else None,
                       pending=None if op.fua else (op.seq, op.off, op.end()))
        elif op.kind == FLUSH:
            try:
                h.flush()
            except nbd.Error:
                with self.cv:               # not durable after all
                    self.pending.extend(snap)
                raise
            # Everything acknowledged before the flush was sent is now durable.
            self._done(op, rng, putback=[(s, a, b) for s, a, b in snap])
        elif op.kind == READ:
            if op.df:
                # Structured read with DF (one data chunk): chunks must tile the range.
                chunks = []

                def chunk(sub, off, status, err):
                    chunks.append((off, len(sub), status))
                    return 0

                got = h.pread_structured(op.length, op.off, chunk, nbd.CMD_FLAG_DF)
                pos = op.off
                for off, n, status in sorted(chunks):
                    if off != pos:
                        raise CaseFailure("structured READ chunks do not tile the range: %s" % chunks)
                    pos += n
                if pos != op.end():
                    raise CaseFailure("structured READ chunks do not tile the range: %s" % chunks)
            else:
                got = h.pread(op.length, op.off)
            if len(got) != op.length:
                raise CaseFailure("short read: %d bytes" % len(got))
            with self.cv:
                err = self.model.check_latest(op.off, got)
            if err:
                raise CaseFailure("READ returned wrong data: " + err)
            self._done(op, rng)
        elif op.kind == BSTATUS:
            self._block_status(h, op)
            self._done(op, rng)

    def _block_status(self, h, op):
        """Extents must start at the requested offset, be contiguous and non-empty; a
        short reply is continued with another request until the range is covered; every
        extent flagged ZERO must read as zero in the model (within the requested range,
        the only part the range lock protects)."""
        pos, end = op.off, op.end()
        for _ in range(256):
            if pos >= end:
                return
            got = []

            def cb(ctx, off, entries, err):
                if ctx == "base:allocation":
                    got.append((off, list(entries)))
                return 0

            h.block_status(end - pos, pos, cb)
            if len(got) != 1:
                raise CaseFailure("BLOCK_STATUS %d+%d: %d base:allocation replies" % (pos, end - pos, len(got)))
            off, ents = got[0]
            if off != pos or not ents or len(ents) % 2:
                raise CaseFailure("BLOCK_STATUS %d+%d: reply at %d with %d entries" % (pos, end - pos, off, len(ents)))
            p = pos
            for i in range(0, len(ents), 2):
                length, flags = ents[i], ents[i + 1]
                if length <= 0 or flags & ~3:
                    raise CaseFailure("BLOCK_STATUS %d+%d: extent %d has length %d flags %#x" % (
                        pos, end - pos, i // 2, length, flags))
                if p >= end:
                    raise CaseFailure("BLOCK_STATUS %d+%d: extents after the one that reached the end" % (pos, end - pos))
                a, b = p, min(end, p + length)
                if flags & STATE_ZERO:
                    with self.cv:
                        bad = self.model.zero_ok(a, b)
                    if bad is not None:
                        raise CaseFailure("BLOCK_STATUS says %d+%d (flags %d) is zero but the model has "
                                          "non-zero data at %d" % (p, length, flags, bad))
                p += length
            pos = p
        raise CaseFailure("BLOCK_STATUS %d+%d: range not covered after 256 requests" % (op.off, op.length))


def read_back(sock, model, mode, rng=None, spot_reads=0, chunk=4 << 20, stats=None):
    """Read every modelled range back and check it: mode 'latest' (server alive all
    along; undefined bytes are then pinned to what was read) or 'candidates' (after a
    crash; every range is then pinned). Plus random spot reads anywhere on the disk.
    `stats` (crash mode) counts pieces with several candidates and ranges that read as an
    older candidate than the latest."""
    stats = {} if stats is None else stats
    h = connect(sock)
    try:
        for a, b in list(model.ranges(chunk)):
            got = h.pread(b - a, a)
            if mode == "latest":
                err = model.check_latest(a, got)
                if err:
                    raise CaseFailure("read-back: " + err)
                for s, e, ent in model.pieces(a, b):
                    if ent[-1].kind == M.UNDEF:
                        model.set_actual(s, got[s - a:e - a])
            else:
                err = model.check_candidates(a, got)
                if err:
                    raise CaseFailure("after crash: " + err)
                if model.check_latest(a, got):
                    stats["older"] = stats.get("older", 0) + 1   # a write did not survive (allowed)
                stats["uncertain"] = stats.get("uncertain", 0) + sum(
                    1 for _, _, ent in model.pieces(a, b) if len(ent) > 1)
                model.set_actual(a, got)
        for _ in range(spot_reads):
            n = rng.randint(1, 256 << 10)
            a = rng.randrange(0, max(1, model.size - n))
            got = h.pread(n, a)
            err = model.check_latest(a, got)
            if err:
                raise CaseFailure("spot read %d+%d: %s" % (a, n, err))
        if h.can_flush() and not h.is_read_only():
            h.flush()
    finally:
        close(h)
