"""Buffers for libnbd aio requests that do not leak.

libnbd 1.14's Python bindings never release the buffer of an aio_pread/aio_pwrite (measured:
300 x 1 MiB requests grow the process by 300 MiB, with or without a completion callback),
which made an hour-long run with pipelined cases eat all 24 GiB of the machine. So aio
requests use a view of a pooled anonymous mmap instead: the leaked reference pins only the
small view object, the mapping goes back to the pool after the request, and the pages of
big ones are given back to the kernel (MADV_DONTNEED)."""

import mmap
import threading

_lock = threading.Lock()
_free = {}   # size class -> [mmap]


def _size_class(n):
    c = 4096
    while c < n:
        c <<= 1
    return c


def take(n):
    """An mmap of at least n bytes from the pool, and a view of exactly n bytes."""
    cls = _size_class(max(1, n))
    with _lock:
        lst = _free.get(cls)
        m = lst.pop() if lst else None
    if m is None:
        m = mmap.mmap(-1, cls)
    return m, memoryview(m)[:n]


def give_back(m):
    if len(m) >= (256 << 10):
        m.madvise(mmap.MADV_DONTNEED)   # the pages go back to the kernel, the mapping stays
    with _lock:
        _free.setdefault(len(m), []).append(m)
