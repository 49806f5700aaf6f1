"""Every process the tester starts goes through here, so that all of them can be killed
by PID at the end of a case or of the run, even on failure or Ctrl-C, and so that no
subprocess call can block forever."""

import os
import signal
import subprocess
import threading

_lock = threading.Lock()
_live = {}  # pid -> Popen


class ToolError(Exception):
    pass


def spawn(args, **kw):
    p = subprocess.Popen(args, **kw)
    with _lock:
        _live[p.pid] = p
    return p


def forget(p):
    with _lock:
        _live.pop(p.pid, None)


def wait(p, timeout):
    """Wait for p; on timeout kill it (by PID) and raise."""
    try:
        rc = p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill(p)
        raise ToolError("%s did not finish within %ss (killed)" % (os.path.basename(str(p.args[0])), timeout))
    forget(p)
    return rc


def kill(p, sig=signal.SIGKILL):
    if p.poll() is None:
        try:
            os.kill(p.pid, sig)
        except ProcessLookupError:
            pass
    if sig == signal.SIGKILL:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        forget(p)


def run(args, timeout, ok=(0,), input=None):
    """Run a tool, capture its output; raise ToolError on an unexpected exit status."""
    p = spawn(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
              stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL)
    try:
        out, err = p.communicate(input=input, timeout=timeout)
    except subprocess.TimeoutExpired:
        kill(p)
        raise ToolError("`%s` timed out after %ss" % (" ".join(map(str, args)), timeout))
    forget(p)
    out, err = out.decode(errors="replace"), err.decode(errors="replace")
    if ok is not None and p.returncode not in ok:
        raise ToolError("`%s` exited %d: %s" % (" ".join(map(str, args)), p.returncode,
                                                (err.strip() or out.strip())[-2000:]))
    return p.returncode, out, err


def kill_all():
    """Kill every process still alive that this run started; return their PIDs."""
    with _lock:
        procs = list(_live.values())
    left = []
    for p in procs:
        if p.poll() is None:
            left.append(p.pid)
        kill(p)
    return left


def alive():
    with _lock:
        return [p.pid for p in _live.values() if p.poll() is None]
