#!/usr/bin/env python3
"""What live metrics cost per NBD request, counted in CPU instructions rather than timed.

On a shared 2-core machine a throughput benchmark cannot resolve a few per cent: two runs of
the same server already differ by more than that (bench.py --sections metrics prints that
noise as its "control" column). Instructions executed are not subject to that noise, so this
script runs `swiftnbd serve` under valgrind's callgrind, with and without `--metrics`, drives
a fixed number of fio requests at it, and reports the server's instructions per request.

Each (workload, metrics on/off) pair is run with two request counts and the difference is
divided by the difference in requests, so start-up, negotiation and shutdown cancel out. The
result is the server's whole cost of one request — parsing, storage, reply, the threads that
carry it — and the ratio on/off is the data-path overhead of metrics. Scrapes are not part of
it (their cost depends on how often Prometheus asks, not on the traffic).

Usage: Benchmarks/metrics_instructions.py --swiftnbd .build/release/swiftnbd [--requests 4000]
Needs valgrind and fio (fio's `nbd` engine). Prints a markdown table.
"""
import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

WORKLOADS = {
    "rand read 4K QD32": dict(rw="randread", bs="4k", iodepth=32),
    "rand write 4K QD32": dict(rw="randwrite", bs="4k", iodepth=32),
    "rand read 4K QD1": dict(rw="randread", bs="4k", iodepth=1),
    "seq read 1M QD8": dict(rw="read", bs="1M", iodepth=8),
    "seq write 1M QD8": dict(rw="write", bs="1M", iodepth=8),
}


def parse_size(text):
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    return int(text[:-1]) * units[text[-1].lower()] if text[-1].isalpha() else int(text)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_socket(path, proc, timeout=120):
    """callgrind starts the server some 50 times slower than usual: wait for its socket."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening")
        if os.path.exists(path):
            with socket.socket(socket.AF_UNIX) as s:
                try:
                    s.connect(path)
                    return
                except OSError:
                    pass
        time.sleep(0.2)
    raise RuntimeError(f"server not listening on {path} after {timeout} s")


def stop(proc, grace):
    """SIGTERM (callgrind writes its counts on the way out), SIGKILL after `grace` seconds."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def fio_command(sock, workload, size, requests):
    job = WORKLOADS[workload]
    return ["fio", "--name=count", "--ioengine=nbd", f"--uri=nbd+unix:///?socket={sock}", f"--rw={job['rw']}",
            f"--bs={job['bs']}", f"--iodepth={job['iodepth']}", f"--size={size}",
            f"--io_size={requests * parse_size(job['bs'])}", "--randseed=7", "--norandommap", "--output-format=terse"]


def cpu_ticks(pid):
    """(user, system) clock ticks the process has used, all threads."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]), int(fields[12])


def native_cpu_split(args, workload, requests, workdir):
    """The server's user and system CPU seconds per request without valgrind, metrics off."""
    sock = os.path.join(workdir, "native.sock")
    if os.path.exists(sock):
        os.unlink(sock)
    with open(os.path.join(workdir, "server.log"), "ab") as log:
        proc = subprocess.Popen([args.swiftnbd, "serve", args.image, "--format", "raw", "--unix", sock],
                                stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        try:
            wait_for_socket(sock, proc)
            user0, sys0 = cpu_ticks(proc.pid)
            subprocess.run(fio_command(sock, workload, args.size, requests), check=True, capture_output=True, timeout=1800)
            user1, sys1 = cpu_ticks(proc.pid)
        finally:
            stop(proc, 60)
    tick = os.sysconf("SC_CLK_TCK")
    return (user1 - user0) / tick / requests, (sys1 - sys0) / tick / requests


def server_instructions(args, workload, metrics, requests, workdir):
    """Instructions the server executed (all threads) while fio sent `requests` requests."""
    sock = os.path.join(workdir, "bench.sock")
    out = os.path.join(workdir, "callgrind.out")
    for path in (sock, out):
        if os.path.exists(path):
            os.unlink(path)
    cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", args.swiftnbd, "serve", args.image,
           "--format", "raw", "--unix", sock]
    if metrics:
        cmd += ["--metrics", f"127.0.0.1:{free_port()}"]
    with open(os.path.join(workdir, "server.log"), "ab") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        try:
            wait_for_socket(sock, proc)
            subprocess.run(fio_command(sock, workload, args.size, requests), check=True, capture_output=True,
                           timeout=1800)
        finally:
            stop(proc, 120)
    with open(out) as f:
        for line in f:
            m = re.match(r"(summary|totals): (\d+)", line)
            if m:
                return int(m.group(2))
    raise RuntimeError(f"no instruction total in {out}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--swiftnbd", required=True, help="path of a release swiftnbd binary")
    p.add_argument("--requests", type=int, default=4000, help="requests in the longer run (the shorter sends a fifth)")
    p.add_argument("--native-requests", type=int, default=200_000,
                   help="requests (at most 8 GiB of them) of the run without valgrind that measures CPU per request")
    p.add_argument("--size", default="256M", help="image size")
    p.add_argument("--workloads", default=",".join(WORKLOADS), help="comma-separated subset of: " + ", ".join(WORKLOADS))
    args = p.parse_args()
    for tool in ("valgrind", "fio", "strip"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is needed (apt-get install {tool})")
    workdir = tempfile.mkdtemp(prefix="swiftnbd-instr-")
    try:
        # valgrind 3.19 (Debian 12) cannot read the DWARF 5 that Swift emits and gives up on
        # the binary: count a copy without debug information (symbols stay).
        stripped = os.path.join(workdir, "swiftnbd")
        subprocess.run(["strip", "--strip-debug", "-o", stripped, args.swiftnbd], check=True)
        args.swiftnbd = stripped
        args.image = os.path.join(workdir, "bench.raw")
        subprocess.run(["fio", "--name=fill", f"--filename={args.image}", "--rw=write", "--bs=1M", f"--size={args.size}",
                        "--output-format=terse"], check=True, capture_output=True)
        short, long = args.requests // 5, args.requests
        print("| workload | user instructions/request, metrics off | metrics on | added | user on/off "
              "| CPU µs/request off (user + system) | added CPU, estimated |")
        print("|---|---|---|---|---|---|---|")
        for workload in args.workloads.split(","):
            per_request = {}
            for metrics in (False, True):
                low = server_instructions(args, workload, metrics, short, workdir)
                high = server_instructions(args, workload, metrics, long, workdir)
                per_request[metrics] = (high - low) / (long - short)
            off, on = per_request[False], per_request[True]
            # callgrind sees user space only; the kernel's socket and file work is the rest of a
            # request's cost. Scale the added instructions by the user time one instruction took
            # natively, and compare with the whole (user + system) CPU of a request.
            native = min(args.native_requests, (8 << 30) // parse_size(WORKLOADS[workload]["bs"]))
            user, system = native_cpu_split(args, workload, native, workdir)
            added = (on - off) / off * user / (user + system)
            print(f"| {workload} | {off:,.0f} | {on:,.0f} | {on - off:+,.0f} | {on / off:.3f} "
                  f"| {(user + system) * 1e6:.1f} ({user * 1e6:.1f} + {system * 1e6:.1f}) | {added * 100:+.1f} % |",
                  flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
