#!/usr/bin/env python3
"""SwiftNBD benchmark: swiftnbd against qemu-nbd and nbdkit on the same data, in one run.

Every server exports the same image; workloads run against each server in turn, round after
round (servers alternate, so drift on a shared machine hits all of them alike), and the
median of the rounds is reported with the server's CPU seconds per GiB moved, its peak RSS,
and the ratio swiftnbd / best peer. Nothing here is a test: it measures and prints.

Sections (--sections): plain (fio + nbdcopy, Unix and TCP), tls (x509 and PSK), copy
(swiftnbd copy vs nbdcopy vs qemu-img convert), qcow2 (swiftnbd vs qemu-nbd on qcow2),
qcow2-scale (4K random writes then reads over fresh 1 TiB/64K and 32 GiB/4K qcow2 images),
metrics (swiftnbd with `--metrics` and a scraper polling it every second, against swiftnbd
without, and against a second swiftnbd without as a control that shows the run's noise; not
in the default list: ask for it with --sections metrics, or --metrics to add it).
"""
import argparse
import itertools
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

CLK_TCK = os.sysconf("SC_CLK_TCK")
GiB = 1 << 30
MiB = 1 << 20


# ---------------------------------------------------------------- process accounting
def cpu_seconds(pid):
    """User+system CPU of a process and all its threads, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def peak_rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(target, proc, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if isinstance(target, int):
                socket.create_connection(("127.0.0.1", target), timeout=1).close()
            else:
                s = socket.socket(socket.AF_UNIX)
                s.connect(target)
                s.close()
            return
        except OSError:
            time.sleep(0.05)
    proc.kill()  # never leave a server that did not come up running behind us
    proc.wait()
    raise RuntimeError("server did not start listening")


# ---------------------------------------------------------------- servers
class Server:
    """One running NBD server exporting `image` under the default export name.

    Kind "swiftnbd+metrics" is swiftnbd with `--metrics` on a free port and a scraper that
    fetches /metrics once a second while the server runs (what Prometheus would do, only
    more often), so the data path pays for live metrics exactly as in production."""

    SCRAPE_INTERVAL = 1.0

    def __init__(self, kind, image, workdir, transport, tls, pki, psk, fmt="raw", swiftnbd="swiftnbd"):
        self.kind, self.transport, self.tls = kind, transport, tls
        self.sock = os.path.join(workdir, f"{kind}.sock")
        self.port = free_port()
        self.metrics_port = free_port() if kind == "swiftnbd+metrics" else None
        self.scrapes, self.scrape_failures = 0, 0
        self.stopping = threading.Event()
        self.scraper = None
        if os.path.exists(self.sock):
            os.unlink(self.sock)
        where = self.sock if transport == "unix" else self.port
        cmd = self.command(kind, image, transport, tls, pki, psk, fmt, swiftnbd)
        self.log = open(os.path.join(workdir, f"{kind}.log"), "ab")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=self.log, stdin=subprocess.DEVNULL)
        wait_listening(where, self.proc)
        if self.metrics_port:
            wait_listening(self.metrics_port, self.proc)
            self.scraper = threading.Thread(target=self.scrape_loop, daemon=True)
            self.scraper.start()

    def scrape_loop(self):
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        while not self.stopping.wait(self.SCRAPE_INTERVAL):
            try:
                with urllib.request.urlopen(url, timeout=5) as reply:
                    reply.read()
                self.scrapes += 1
            except OSError:
                self.scrape_failures += 1

    def command(self, kind, image, transport, tls, pki, psk, fmt, swiftnbd):
        if kind in ("swiftnbd", "swiftnbd+metrics"):
            cmd = [swiftnbd, "serve", image, "--format", fmt]
            if self.metrics_port:
                cmd += ["--metrics", f"127.0.0.1:{self.metrics_port}"]
            cmd += ["--unix", self.sock] if transport == "unix" else ["--bind", "127.0.0.1", "--port", str(self.port)]
            if tls == "x509":
                cmd += ["--tls", "require", "--tls-certificates", pki]
            elif tls == "psk":
                cmd += ["--tls", "require", "--tls-psk", psk]
            return cmd
        if kind == "qemu-nbd":
            cmd = ["qemu-nbd", "-f", fmt, "-x", "", "-t", "-e", "32", "--cache=writeback"]
            cmd += ["-k", self.sock] if transport == "unix" else ["-b", "127.0.0.1", "-p", str(self.port)]
            if tls == "x509":
                cmd += ["--object", f"tls-creds-x509,id=tls0,dir={pki},endpoint=server", "--tls-creds", "tls0"]
            elif tls == "psk":
                cmd += ["--object", f"tls-creds-psk,id=tls0,dir={os.path.dirname(psk)},endpoint=server", "--tls-creds", "tls0"]
            return cmd + [image]
        if kind == "nbdkit":
            cmd = ["nbdkit", "-f", "--exit-with-parent"]
            cmd += ["-U", self.sock] if transport == "unix" else ["-i", "127.0.0.1", "-p", str(self.port)]
            if tls == "x509":
                cmd += ["--tls=require", f"--tls-certificates={pki}", "--tls-verify-peer"]
            elif tls == "psk":
                cmd += ["--tls=require", f"--tls-psk={psk}"]
            return cmd + ["file", image]
        raise ValueError(kind)

    def uri(self, user=None, pki=None, psk=None):
        scheme = "nbds" if self.tls != "off" else "nbd"
        query = []
        if self.tls == "x509" and pki:
            query.append(f"tls-certificates={pki}")
        if self.tls == "psk" and psk:
            query.append(f"tls-psk-file={psk}")
        userinfo = f"{user}@" if (user and self.tls == "psk") else ""
        if self.transport == "unix":
            query.insert(0, f"socket={self.sock}")
            return f"{scheme}+unix://{userinfo}/?" + "&".join(query)
        return f"{scheme}://{userinfo}127.0.0.1:{self.port}/" + ("?" + "&".join(query) if query else "")

    def cpu(self):
        return cpu_seconds(self.proc.pid)

    def rss(self):
        return peak_rss_mib(self.proc.pid)

    def stop(self):
        if self.scraper:
            self.stopping.set()
            self.scraper.join()
            if self.scrapes == 0 or self.scrape_failures:
                print(f"# {self.kind}: {self.scrapes} scrapes, {self.scrape_failures} failed", file=sys.stderr)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


# ---------------------------------------------------------------- workloads
FIO_JOBS = {
    "seq read 1M QD8": dict(rw="read", bs="1M", iodepth=8, metric="MiB/s"),
    "seq write 1M QD8": dict(rw="write", bs="1M", iodepth=8, metric="MiB/s"),
    "rand read 4K QD32": dict(rw="randread", bs="4k", iodepth=32, metric="IOPS"),
    "rand write 4K QD32": dict(rw="randwrite", bs="4k", iodepth=32, metric="IOPS"),
    "rand read 4K QD1": dict(rw="randread", bs="4k", iodepth=1, metric="IOPS"),
}


def run_fio(uri, job, size, runtime, numjobs=1, env=None, wrap=None, extra=(), time_based=True):
    cmd = ["fio", "--name=bench", "--ioengine=nbd", f"--uri={uri}", f"--rw={job['rw']}", f"--bs={job['bs']}",
           f"--iodepth={job['iodepth']}", f"--size={size}", f"--runtime={runtime}",
           f"--numjobs={numjobs}", "--group_reporting", "--output-format=json"] + list(extra)
    if time_based:
        cmd.append("--time_based")
    if wrap:
        cmd = wrap(cmd)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=runtime * 4 + 60, env=env)
    text = out.stdout[out.stdout.find("{"):]
    data = json.loads(text)["jobs"][0]
    side = data["read"] if "read" in job["rw"] else data["write"]
    if data.get("error"):
        raise RuntimeError(f"fio error {data['error']}: {out.stderr[-400:]}")
    moved = side["io_bytes"]
    value = side["bw_bytes"] / MiB if job["metric"] == "MiB/s" else side["iops"]
    return value, moved


def run_nbdcopy(src, dst, timeout=600):
    start = time.time()
    out = subprocess.run(["nbdcopy", src, dst], capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"nbdcopy failed: {out.stderr[-400:]}")
    return time.time() - start


def libnbd_default_pki_wrapper(pki):
    """fio's nbd engine may not read local files named in a URI (libnbd's local-file rule), so
    for x509 we show it libnbd's default certificate directory (/etc/pki/libnbd for root)
    inside a private mount namespace: nothing on the host is changed. /etc/pki may not exist,
    so /etc gets a private overlay (upper layer on a tmpfs) in which the directory is made."""
    scratch = os.path.join(os.path.dirname(pki), "etc-overlay")
    os.makedirs(scratch, exist_ok=True)

    def wrap(cmd):
        script = (f"mount -t tmpfs none {scratch} && mkdir {scratch}/u {scratch}/w && "
                  f"mount -t overlay overlay -o lowerdir=/etc,upperdir={scratch}/u,workdir={scratch}/w /etc && "
                  "mkdir -p /etc/pki/libnbd && "
                  f"cp {pki}/ca-cert.pem {pki}/client-cert.pem {pki}/client-key.pem /etc/pki/libnbd/ && "
                  'exec "$@"')
        return ["unshare", "--mount", "sh", "-c", script, "sh"] + cmd
    return wrap


# ---------------------------------------------------------------- setup helpers
def make_image(path, size, sparse_half=False):
    """Deterministic incompressible data (or half data, half holes)."""
    chunk = os.urandom(MiB)
    with open(path, "wb") as f:
        f.truncate(size)
        for off in range(0, size, MiB):
            if sparse_half and (off // (64 * MiB)) % 2 == 1:
                continue
            f.seek(off)
            f.write(chunk)


def make_pki(swiftnbd, workdir):
    pki = os.path.join(workdir, "pki")
    subprocess.run([swiftnbd, "certs", "create", pki, "--hostname", "localhost", "--ip", "127.0.0.1",
                    "--psk-user", "bench"], check=True, capture_output=True)
    return pki, os.path.join(pki, "keys.psk")


def median(xs):
    return statistics.median(xs) if xs else float("nan")


# ---------------------------------------------------------------- the table
class Table:
    def __init__(self):
        self.rows = []

    def add(self, section, workload, transport, tls, metric, results, order):
        """results[server] = dict(value=[...], cpu_per_gib=[...], rss=[...])."""
        peers = [s for s in order if s != "swiftnbd" and results.get(s, {}).get("value")]
        ours = median(results.get("swiftnbd", {}).get("value", []))
        best = max((median(results[s]["value"]) for s in peers), default=float("nan"))
        self.rows.append(dict(order=tuple(order), section=section, workload=workload, transport=transport, tls=tls, metric=metric,
                              values={s: median(results.get(s, {}).get("value", [])) for s in order},
                              cpu={s: median(results.get(s, {}).get("cpu_per_gib", [])) for s in order},
                              rss={s: max(results.get(s, {}).get("rss") or [float("nan")]) for s in order},
                              ratio=ours / best if best and best == best else float("nan")))

    def print(self):
        """One markdown table per set of compared programs, in the order rows were added."""
        groups = []
        for r in self.rows:
            if not groups or groups[-1][0] != r["order"]:
                groups.append((r["order"], []))
            groups[-1][1].append(r)
        for order, rows in groups:
            self.print_group(list(order), rows)
        self.print_tls_cost()

    def print_tls_cost(self):
        """Each server's TLS throughput as a fraction of its own plaintext throughput, same
        workload and transport (the "TLS/plaintext ≥ 0.7" target is about swiftnbd's column)."""
        plain = {(r["workload"], r["transport"]): r for r in self.rows if r["section"] == "plain"}
        pairs = [(r, plain[(r["workload"], r["transport"])]) for r in self.rows
                 if r["section"] == "tls" and (r["workload"], r["transport"]) in plain]
        if not pairs:
            return
        order = list(pairs[0][0]["order"])
        header = ["workload", "transport", "TLS"] + [f"{s} TLS/plain" for s in order]
        print()
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for tls_row, plain_row in pairs:
            cells = [tls_row["workload"], tls_row["transport"], tls_row["tls"]]
            for s in order:
                t, p = tls_row["values"].get(s), plain_row["values"].get(s)
                cells.append(fmt(t / p, 2) if t == t and p and p == p else "–")
            print("| " + " | ".join(cells) + " |")

    def print_group(self, order, rows):
        header = ["section", "workload", "transport", "TLS", "metric"] + order + ["ratio vs best other"] + \
                 [f"CPU s/GiB {s}" for s in order] + [f"peak RSS MiB {s}" for s in order]
        print()
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for r in rows:
            cells = [r["section"], r["workload"], r["transport"], r["tls"], r["metric"]]
            cells += [fmt(r["values"][s]) for s in order] + [fmt(r["ratio"], 2)]
            cells += [fmt(r["cpu"][s], 2) for s in order] + [fmt(r["rss"][s], 1) for s in order]
            print("| " + " | ".join(cells) + " |")


def fmt(x, digits=0):
    if x is None or x != x:
        return "–"
    return f"{x:.{digits}f}" if digits else f"{x:.0f}"


# ---------------------------------------------------------------- sections
def bench_servers(args, table, section, image, fmt_name, transports, tls_modes, jobs, servers, pki, psk,
                  fresh_image=None):
    """`fresh_image`, when given, recreates `image` before every workload (each then gets a
    server of its own): an "empty" image must still be empty when the allocating writes run,
    whatever ran before them."""
    for tls in tls_modes:
        for transport in transports:
            workloads = list(jobs) + (["nbdcopy → null:"] if section != "qcow2" else [])
            per = {w: {s: dict(value=[], cpu_per_gib=[], rss=[]) for s in servers} for w in workloads}
            groups = [[w] for w in workloads] if fresh_image else [workloads]
            for rnd in range(args.rounds):
                # Rotate who goes first each round, so warm-up and drift fall on all alike.
                for kind, group in itertools.product(servers[rnd % len(servers):] + servers[:rnd % len(servers)], groups):
                    if fresh_image:
                        fresh_image()
                    # Write back what earlier runs left dirty, so no server pays for another's writes.
                    os.sync()
                    srv = Server(kind, image, args.workdir, transport, tls, pki, psk, fmt_name, args.swiftnbd)
                    try:
                        for w in group:
                            cpu0 = srv.cpu()
                            if w == "nbdcopy → null:":
                                secs = run_nbdcopy(srv.uri(user="bench", pki=pki, psk=psk), "null:")
                                value, moved = args.size_bytes / MiB / secs, args.size_bytes
                            else:
                                job = jobs[w]
                                if tls == "psk":
                                    continue  # fio cannot name a PSK file (libnbd local-file rule)
                                wrap = libnbd_default_pki_wrapper(pki) if tls == "x509" else None
                                value, moved = run_fio(srv.uri(), job, args.size, args.runtime, wrap=wrap)
                            cpu = srv.cpu() - cpu0
                            per[w][kind]["value"].append(value)
                            per[w][kind]["cpu_per_gib"].append(cpu / (moved / GiB) if moved else float("nan"))
                        per[group[0]][kind]["rss"].append(srv.rss())
                    except Exception as e:  # report, keep measuring the others
                        print(f"# {kind} {transport} {tls}: {e}", file=sys.stderr)
                    finally:
                        srv.stop()
            for w in workloads:
                metric = "MiB/s" if w.startswith("nbdcopy") else jobs[w]["metric"]
                if tls == "psk" and not w.startswith("nbdcopy"):
                    continue
                table.add(section, w, transport, tls, metric, per[w], servers)


METRICS_KINDS = ["swiftnbd+metrics", "swiftnbd", "swiftnbd control"]


def bench_metrics(args, image, jobs):
    """The cost of live metrics: swiftnbd with --metrics (scraped every second) against the
    same binary without, and against a second run without ("control": what two identical
    servers differ by on this machine, the noise floor of the comparison). Each round runs all
    three back to back in rotating order; ratios are medians of the per-round ratios, so drift
    between rounds cancels out."""
    rows = []
    for transport in ["unix", "tcp"]:
        workloads = list(jobs) + ["nbdcopy → null:"]
        per = {w: {k: dict(value=[], cpu=[]) for k in METRICS_KINDS} for w in workloads}
        for rnd in range(args.rounds):
            order = METRICS_KINDS[rnd % 3:] + METRICS_KINDS[:rnd % 3]
            results = {}
            for kind in order:
                os.sync()
                server_kind = "swiftnbd" if kind == "swiftnbd control" else kind
                srv = Server(server_kind, image, args.workdir, transport, "off", None, None, "raw", args.swiftnbd)
                try:
                    for w in workloads:
                        cpu0 = srv.cpu()
                        if w.startswith("nbdcopy"):
                            secs = run_nbdcopy(srv.uri(), "null:")
                            value, moved = args.size_bytes / MiB / secs, args.size_bytes
                        else:
                            value, moved = run_fio(srv.uri(), jobs[w], args.size, args.runtime)
                        results[(kind, w)] = (value, (srv.cpu() - cpu0) / (moved / GiB))
                except Exception as e:  # report, keep measuring the others
                    print(f"# metrics {kind} {transport}: {e}", file=sys.stderr)
                finally:
                    srv.stop()
            # Keep only rounds where all three finished, so the ratios stay paired.
            for w in workloads:
                if all((k, w) in results for k in METRICS_KINDS):
                    for k in METRICS_KINDS:
                        per[w][k]["value"].append(results[(k, w)][0])
                        per[w][k]["cpu"].append(results[(k, w)][1])
        for w in workloads:
            p = per[w]

            def paired(a, b, key="value"):
                return median([x / y for x, y in zip(p[a][key], p[b][key]) if y])
            metric = "MiB/s" if w.startswith("nbdcopy") or jobs[w]["metric"] == "MiB/s" else "IOPS"
            rows.append(dict(workload=w, transport=transport, metric=metric, rounds=len(p["swiftnbd"]["value"]),
                             values={k: median(p[k]["value"]) for k in METRICS_KINDS},
                             cpu={k: median(p[k]["cpu"]) for k in METRICS_KINDS},
                             on_off=paired("swiftnbd+metrics", "swiftnbd"),
                             control_off=paired("swiftnbd control", "swiftnbd"),
                             cpu_on_off=paired("swiftnbd+metrics", "swiftnbd", "cpu"),
                             cpu_control_off=paired("swiftnbd control", "swiftnbd", "cpu")))
    return rows


def print_metrics_rows(rows):
    if not rows:
        return
    header = ["workload", "transport", "metric", "rounds"] + [f"{k}" for k in METRICS_KINDS] + \
             ["on/off", "control/off"] + [f"CPU s/GiB {k}" for k in METRICS_KINDS] + ["CPU on/off", "CPU control/off"]
    print()
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        cells = [r["workload"], r["transport"], r["metric"], str(r["rounds"])]
        cells += [fmt(r["values"][k]) for k in METRICS_KINDS] + [fmt(r["on_off"], 3), fmt(r["control_off"], 3)]
        cells += [fmt(r["cpu"][k], 2) for k in METRICS_KINDS] + [fmt(r["cpu_on_off"], 3), fmt(r["cpu_control_off"], 3)]
        print("| " + " | ".join(cells) + " |")


def bench_qcow2_scale(args, table):
    """4K random writes QD32 spread over a fresh, empty huge qcow2 image (1 TiB with 64 KiB
    clusters; 32 GiB with 4 KiB clusters), then 4K random reads of exactly what was written:
    fio replays the same offsets (same seed, no random map) for as many reads as there were
    writes. Every server gets a fresh image each round, with its default cache settings."""
    cases = [("qcow2 1 TiB, 64 KiB clusters", "1T", "64k"), ("qcow2 32 GiB, 4 KiB clusters", "32G", "4k")]
    servers = ["swiftnbd", "qemu-nbd"]
    write_job, read_job = FIO_JOBS["rand write 4K QD32"], FIO_JOBS["rand read 4K QD32"]
    same_offsets = ["--norandommap", "--randrepeat=1", "--randseed=20261205"]
    for section, size, cluster in cases:
        image = os.path.join(args.workdir, "scale.qcow2")
        per = {w: {s: dict(value=[], cpu_per_gib=[], rss=[]) for s in servers} for w in ("write", "read")}
        for rnd in range(args.rounds):
            for kind in servers[rnd % 2:] + servers[:rnd % 2]:
                subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-o", f"cluster_size={cluster}", image, size], check=True)
                os.sync()
                srv = Server(kind, image, args.workdir, "unix", "off", None, None, "qcow2", args.swiftnbd)
                try:
                    cpu0 = srv.cpu()
                    value, moved = run_fio(srv.uri(), write_job, size, args.runtime, extra=same_offsets)
                    cpu1 = srv.cpu()
                    per["write"][kind]["value"].append(value)
                    per["write"][kind]["cpu_per_gib"].append((cpu1 - cpu0) / (moved / GiB))
                    ios = max(1, moved // 4096)
                    value, moved = run_fio(srv.uri(), read_job, size, args.runtime * 4 + 60, extra=same_offsets + [f"--number_ios={ios}"],
                                           time_based=False)
                    per["read"][kind]["value"].append(value)
                    per["read"][kind]["cpu_per_gib"].append((srv.cpu() - cpu1) / (moved / GiB))
                    per["write"][kind]["rss"].append(srv.rss())
                except Exception as e:  # report, keep measuring the others
                    print(f"# {kind} {section}: {e}", file=sys.stderr)
                finally:
                    srv.stop()
        table.add(section, "rand write 4K QD32 (empty image)", "unix", "off", "IOPS", per["write"], servers)
        table.add(section, "rand read 4K QD32 (what was written)", "unix", "off", "IOPS", per["read"], servers)
        os.unlink(image)


def bench_rss_16_clients(args, table, image, pki, psk):
    """Peak RSS of each server while 16 clients hammer it (the ≤ 32 MiB target)."""
    servers = ["swiftnbd", "qemu-nbd", "nbdkit"]
    per = {s: dict(value=[], cpu_per_gib=[], rss=[]) for s in servers}
    for kind in servers:
        srv = Server(kind, image, args.workdir, "unix", "off", pki, psk, "raw", args.swiftnbd)
        try:
            cpu0 = srv.cpu()
            value, moved = run_fio(srv.uri(), dict(rw="randread", bs="64k", iodepth=8, metric="MiB/s"),
                                   args.size, args.runtime, numjobs=16)
            per[kind]["value"].append(value)
            per[kind]["cpu_per_gib"].append((srv.cpu() - cpu0) / (moved / GiB))
            per[kind]["rss"].append(srv.rss())
        finally:
            srv.stop()
    table.add("plain", "16 clients rand read 64K QD8", "unix", "off", "MiB/s", per, servers)


def bench_copy(args, table, pki, psk):
    """Client side: swiftnbd copy vs nbdcopy vs qemu-img convert, same nbdkit source."""
    tools = ["swiftnbd", "nbdcopy", "qemu-img"]
    size = args.size_bytes
    for label, plugin in [("nbdkit pattern, full of data", "pattern"), ("half-sparse file", "file")]:
        for dest in ["null:", "file"]:
            per = {t: dict(value=[], cpu_per_gib=[], rss=[]) for t in tools}
            for rnd in range(args.rounds):
                sock = os.path.join(args.workdir, "src.sock")
                if os.path.exists(sock):
                    os.unlink(sock)  # a stopped nbdkit may leave its socket behind
                if plugin == "pattern":
                    # Every 8 bytes hold their own offset: data everywhere, generated on the fly.
                    cmd = ["nbdkit", "-f", "--exit-with-parent", "-U", sock, "pattern", f"size={size}"]
                else:
                    cmd = ["nbdkit", "-f", "--exit-with-parent", "-U", sock, "file", args.sparse_image]
                log = open(os.path.join(args.workdir, "copy-src.log"), "ab")
                proc = subprocess.Popen(cmd, stdout=log, stderr=log)
                wait_listening(sock, proc)
                uri = f"nbd+unix:///?socket={sock}"
                out = os.path.join(args.workdir, "copy-out.raw")
                try:
                    # Rotate who goes first: the first copy after nbdkit starts pays its warm-up.
                    for tool in tools[rnd % len(tools):] + tools[:rnd % len(tools)]:
                        if os.path.exists(out):
                            os.unlink(out)
                        target = "null:" if dest == "null:" else out
                        os.sync()
                        if tool == "swiftnbd":
                            cmd = [args.swiftnbd, "copy", uri, target]
                        elif tool == "nbdcopy":
                            cmd = ["nbdcopy", uri, target]
                        elif dest == "null:":
                            cmd = ["qemu-img", "convert", "-n", "-f", "raw", uri,
                                   "--target-image-opts", f"driver=null-co,size={size}"]
                        else:
                            cmd = ["qemu-img", "convert", "-f", "raw", "-O", "raw", uri, out]
                        t0 = time.time()
                        r0 = os.times()
                        res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
                        r1 = os.times()
                        secs = time.time() - t0
                        if res.returncode != 0:
                            print(f"# copy {tool} {label} → {dest}: {res.stderr[-300:]}", file=sys.stderr)
                            continue
                        cpu = (r1.children_user - r0.children_user) + (r1.children_system - r0.children_system)
                        per[tool]["value"].append(size / MiB / secs)
                        per[tool]["cpu_per_gib"].append(cpu / (size / GiB))
                finally:
                    proc.terminate()
                    proc.wait()
                    log.close()
            table.add("copy", f"{label} → {dest}", "unix", "off", "MiB/s", per, tools)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--swiftnbd", required=True, help="path of a release swiftnbd binary")
    p.add_argument("--size", default="1G", help="image size (fio syntax)")
    p.add_argument("--runtime", type=int, default=5, help="seconds per fio workload")
    p.add_argument("--rounds", type=int, default=2, help="rounds; servers alternate within each")
    p.add_argument("--sections", default="plain,tls,copy,qcow2,qcow2-scale")
    p.add_argument("--metrics", action="store_true",
                   help="also run the metrics section: swiftnbd with --metrics (scraped every second) vs without")
    p.add_argument("--workdir", default=None)
    args = p.parse_args()

    units = {"K": 1 << 10, "M": MiB, "G": GiB}
    args.size_bytes = int(args.size[:-1]) * units[args.size[-1].upper()] if args.size[-1].isalpha() else int(args.size)
    args.workdir = args.workdir or tempfile.mkdtemp(prefix="swiftnbd-bench-")
    sections = args.sections.split(",") + (["metrics"] if args.metrics else [])
    image = os.path.join(args.workdir, "bench.raw")
    args.sparse_image = os.path.join(args.workdir, "half-sparse.raw")
    print(f"# preparing {args.size} images in {args.workdir}", file=sys.stderr)
    make_image(image, args.size_bytes)
    pki, psk = make_pki(args.swiftnbd, args.workdir)
    table = Table()
    servers = ["swiftnbd", "qemu-nbd", "nbdkit"]
    plain_jobs = {k: v for k, v in FIO_JOBS.items() if "QD1" not in k}

    if "plain" in sections:
        bench_servers(args, table, "plain", image, "raw", ["unix", "tcp"], ["off"], plain_jobs, servers, pki, psk)
        bench_rss_16_clients(args, table, image, pki, psk)
    if "tls" in sections:
        tls_jobs = {k: FIO_JOBS[k] for k in ["seq read 1M QD8", "seq write 1M QD8", "rand read 4K QD1"]}
        bench_servers(args, table, "tls", image, "raw", ["tcp", "unix"], ["x509", "psk"], tls_jobs, servers, pki, psk)
    if "copy" in sections:
        make_image(args.sparse_image, args.size_bytes, sparse_half=True)
        bench_copy(args, table, pki, psk)
    if "qcow2" in sections:
        for label, prealloc in [("allocated", "full"), ("empty", "off")]:
            q = os.path.join(args.workdir, f"bench-{label}.qcow2")

            def create(q=q, prealloc=prealloc):
                subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-o", f"cluster_size=64k,preallocation={prealloc}",
                                q, args.size], check=True)
                if prealloc == "full":
                    subprocess.run(["qemu-img", "convert", "-n", "-f", "raw", "-O", "qcow2", image, q], check=True)
            create()
            bench_servers(args, table, f"qcow2 {label}", q, "qcow2", ["unix"], ["off"], plain_jobs,
                          ["swiftnbd", "qemu-nbd"], pki, psk, fresh_image=create if prealloc == "off" else None)

    if "qcow2-scale" in sections:
        bench_qcow2_scale(args, table)

    metrics_rows = []
    if "metrics" in sections:
        metrics_jobs = dict(plain_jobs, **{"rand read 4K QD1": FIO_JOBS["rand read 4K QD1"]})
        metrics_rows = bench_metrics(args, image, metrics_jobs)

    table.print()
    print_metrics_rows(metrics_rows)
    shutil.rmtree(args.workdir, ignore_errors=True)


if __name__ == "__main__":
    # SIGTERM (and SIGHUP) unwind like Ctrl-C, so every `finally: srv.stop()` runs and no
    # server this benchmark started outlives it.
    def unwind(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, unwind)
    signal.signal(signal.SIGHUP, unwind)
    main()
