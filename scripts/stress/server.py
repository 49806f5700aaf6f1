"""Starting and stopping `swiftnbd serve` on a Unix socket, and finding the binary."""

import glob
import os
import signal
import socket
import subprocess
import time

from . import procs

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
_help_cache = {}


def binary():
    """$SWIFTNBD, else the release build if it is newer than every source, else debug."""
    env = os.environ.get("SWIFTNBD")
    if env:
        return env
    rel = os.path.join(REPO, ".build/release/swiftnbd")
    dbg = os.path.join(REPO, ".build/debug/swiftnbd")
    if os.path.exists(rel):
        srcs = glob.glob(os.path.join(REPO, "Sources/**/*.swift"), recursive=True)
        srcs.append(os.path.join(REPO, "Package.swift"))
        newest = max(os.path.getmtime(s) for s in srcs)
        if os.path.getmtime(rel) >= newest:
            return rel
    return dbg


def serve_options(exe):
    """The set of `--options` `swiftnbd serve --help` mentions (checked once per binary
    and mtime: cache options are being added while this tester is used)."""
    key = (exe, os.path.getmtime(exe))
    if key not in _help_cache:
        _, out, err = procs.run([exe, "serve", "--help"], timeout=30, ok=None)
        text = out + err
        _help_cache[key] = {w.strip(",.()") for w in text.split() if w.startswith("--")}
    return _help_cache[key]


class Server:
    """One `swiftnbd serve` process for one image; stderr goes to a log file."""

    def __init__(self, exe, image, fmt, sock, log_path, extra=()):
        self.exe, self.image, self.fmt, self.sock = exe, image, fmt, sock
        self.log_path = log_path
        self.extra = list(extra)
        self.proc = None
        self.starts = 0

    def argv(self):
        return [self.exe, "serve", self.image, "--format", self.fmt, "--unix", self.sock,
                "--name", ""] + self.extra

    def start(self, timeout=60):
        if os.path.exists(self.sock):
            os.unlink(self.sock)
        self.starts += 1
        log = open(self.log_path, "ab")
        log.write(("\n=== start #%d: %s\n" % (self.starts, " ".join(repr(a) if a == "" else a for a in self.argv()))).encode())
        log.flush()
        self.proc = procs.spawn(self.argv(), stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise procs.ToolError("server exited %d at start-up" % self.proc.returncode)
            if os.path.exists(self.sock):
                s = socket.socket(socket.AF_UNIX)
                try:
                    s.connect(self.sock)
                    return
                except OSError:
                    pass
                finally:
                    s.close()
            time.sleep(0.02)
        raise procs.ToolError("server did not listen on %s within %ss" % (self.sock, timeout))

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def crash(self):
        """SIGKILL by PID, and reap it."""
        if self.proc is not None:
            procs.kill(self.proc, signal.SIGKILL)

    def signal_kill_nowait(self):
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def stop(self, timeout=120):
        """SIGTERM: the server flushes and must exit 0."""
        p = self.proc
        if p is None:
            return
        if p.poll() is None:
            os.kill(p.pid, signal.SIGTERM)
        rc = procs.wait(p, timeout)
        self.proc = None
        if rc != 0:
            raise procs.ToolError("server exited %d after SIGTERM (expected 0)" % rc)

    def exit_status(self):
        return None if self.proc is None else self.proc.poll()

    def log_tail(self, lines=40):
        try:
            with open(self.log_path, "rb") as f:
                data = f.read()[-65536:].decode(errors="replace")
        except OSError:
            return ""
        return "\n".join(data.splitlines()[-lines:])

    def uri(self):
        return "nbd+unix:///?socket=" + self.sock
