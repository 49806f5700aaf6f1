#!/usr/bin/env python3
"""Checks that the Linux guest continued on the destination after a migration that resumed it
(post-copy runs of Benchmarks/migration-strategies.sh, where the images cannot be compared
because the destination keeps writing): its console continues the source's sequence without
a reboot or a memory mismatch, and every disk record of the source's final image is on the
destination, same or newer.

usage: migration-strategies-check.py SRC.raw DST.raw SRC-CONSOLE DST-CONSOLE  (prints true/false)
"""
import re
import struct
import sys

def records(path):
    out = {}
    with open(path, "rb") as f:
        f.seek(2048 * 512)
        data = f.read(30720 * 512)
    for i in range(len(data) // 512):
        s = data[i * 512:(i + 1) * 512]
        if s[:4] != b"LMIG":
            continue
        seq, lba, comp = struct.unpack_from("<IQI", s, 4)
        if lba == 2048 + i and comp == (~seq & 0xFFFFFFFF):
            out[lba] = seq
    return out

def console(path):
    text = open(path, encoding="latin-1").read()
    seqs = [int(m) for m in re.findall(r"LMIG seq=(\d+)", text)]
    return (seqs[-1] if seqs else 0), ("MISMATCH" in text), ("LMIG boot" in text)

src, dst = records(sys.argv[1]), records(sys.argv[2])
lost = [lba for lba, seq in src.items() if dst.get(lba, -1) < seq]
src_seq, _, _ = console(sys.argv[3])
dst_seq, mismatch, rebooted = console(sys.argv[4])
ok = not lost and dst_seq > src_seq and not mismatch and not rebooted and len(src) > 0
print("true" if ok else "false")
if not ok:
    print(f"lost records {lost[:5]}, console seq {src_seq} -> {dst_seq}, mismatch {mismatch}, rebooted {rebooted}", file=sys.stderr)
