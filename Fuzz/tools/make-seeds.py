#!/usr/bin/env python3
"""Writes the synthetic seed corpora and the dictionaries (Fuzz/corpus/*, Fuzz/dict/*).

Captured handshakes (record-relay.py) and qcow2 images (make-qcow2-seeds.sh) are made by their
own scripts; this one writes what is easier to spell out: request and reply streams in the
formats the harnesses expect (see the doc comments of the *FuzzEntryPoints types), URIs, PSK
files, distinguished names and QMP traffic. Run from the repository root.
"""
import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def seed(target, name, data):
    directory = os.path.join(ROOT, "corpus", target)
    os.makedirs(directory, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(directory, name), "wb") as f:
        f.write(data)


# --- NBD wire helpers -------------------------------------------------------------------------
IHAVEOPT = b"IHAVEOPT"
OPT_REPLY_MAGIC = 0x0003E889045565A9


def option(number, payload=b""):
    return IHAVEOPT + struct.pack(">II", number, len(payload)) + payload


def nbd_string(s):
    s = s.encode()
    return struct.pack(">I", len(s)) + s


def go_payload(name, infos=()):
    return nbd_string(name) + struct.pack(">H", len(infos)) + b"".join(struct.pack(">H", i) for i in infos)


def meta_payload(name, queries):
    return nbd_string(name) + struct.pack(">I", len(queries)) + b"".join(nbd_string(q) for q in queries)


def request(command, cookie, offset, length, flags=0, extended=False):
    if extended:
        return struct.pack(">IHHQQQ", 0x21E41C71, flags, command, cookie, offset, length)
    return struct.pack(">IHHQQI", 0x25609513, flags, command, cookie, offset, length)


def option_reply(option_number, reply_type, payload=b""):
    return struct.pack(">QII I", OPT_REPLY_MAGIC, option_number, reply_type, len(payload)) + payload


def simple_reply(cookie, error=0):
    return struct.pack(">IIQ", 0x67446698, error, cookie)


def chunk(cookie, type_, payload, flags=0, extended=False, offset=0):
    if extended:
        return struct.pack(">IHHQQQ", 0x6E8A278C, flags, type_, cookie, offset, len(payload)) + payload
    return struct.pack(">IHHQI", 0x668E33EF, flags, type_, cookie, len(payload)) + payload


DONE = 1
CLIENT_FLAGS = struct.pack(">I", 3)  # fixed newstyle, no zeroes

# --- server-negotiation: [selector] + client bytes ----------------------------------------------
sessions = {
    "go-structured": CLIENT_FLAGS + option(8) + option(10, meta_payload("disk", ["base:allocation"]))
    + option(7, go_payload("disk", [3])) + request(0, 1, 0, 4096) + request(2, 2, 0, 0),
    "go-extended": CLIENT_FLAGS + option(11) + option(10, meta_payload("disk", ["base:allocation", "qemu:allocation-depth"]))
    + option(7, go_payload("", [1, 2, 3])) + request(7, 1, 0, 1 << 20, extended=True)
    + request(1, 2, 0, 512, extended=True) + b"\x5a" * 512 + request(2, 3, 0, 0, extended=True),
    "list-info": CLIENT_FLAGS + option(3) + option(6, go_payload("disk", [0, 1, 2, 3])) + option(9, meta_payload("disk", []))
    + option(9, meta_payload("disk", ["qemu:"])) + option(2),
    "export-name": CLIENT_FLAGS + option(1, b"disk") + request(3, 1, 0, 0) + request(2, 2, 0, 0),
    "oldflags": struct.pack(">I", 1) + option(1, b""),
    "secret": CLIENT_FLAGS + option(6, go_payload("secret")) + option(7, go_payload("secret")),
}
for name, body in sessions.items():
    for mode in (0, 1, 2):
        starttls = option(5) if mode else b""
        # In TLS modes: STARTTLS first, then the same options in the (stand-in) TLS session.
        seed("server-negotiation", f"{name}-tls{mode}", bytes([mode]) + body[:4] + starttls + body[4:])
seed("server-negotiation", "require-before-tls", bytes([2]) + CLIENT_FLAGS + option(7, go_payload("disk")) + option(5, b"x") + option(5))
seed("server-negotiation", "refused-after-tls", bytes([1 | 8]) + CLIENT_FLAGS + option(5) + option(7, go_payload("disk")) + option(2))
seed("server-negotiation", "shutdown", bytes([0x20]) + CLIENT_FLAGS + option(8) + option(7, go_payload("disk")) + option(2))

# --- client-negotiation: [selector, options] + server bytes --------------------------------------
greeting = b"NBDMAGIC" + IHAVEOPT + struct.pack(">H", 3)
info_export = struct.pack(">HQH", 0, 1 << 20, 0x1ED)
info_block = struct.pack(">HIII", 3, 512, 4096, 1 << 25)
go_ok = option_reply(7, 3, info_export) + option_reply(7, 3, info_block) + option_reply(7, 1)
ctx = option_reply(10, 4, struct.pack(">I", 1) + b"base:allocation") + option_reply(10, 4, struct.pack(">I", 2) + b"qemu:allocation-depth") + option_reply(10, 1)
seed("client-negotiation", "go-extended", bytes([0, 1]) + greeting + option_reply(11, 1) + ctx + go_ok)
seed("client-negotiation", "go-structured", bytes([0, 0]) + greeting + option_reply(11, 0x80000001) + option_reply(8, 1) + ctx + go_ok)
seed("client-negotiation", "go-tls", bytes([4, 1]) + greeting + option_reply(5, 1) + option_reply(11, 1) + ctx + go_ok)
seed("client-negotiation", "go-tls-required", bytes([8, 1]) + greeting + option_reply(5, 1) + option_reply(11, 1) + ctx + go_ok)
seed("client-negotiation", "tls-refused", bytes([4, 0]) + greeting + option_reply(5, 0x80000001) + option_reply(11, 1) + go_ok)
seed("client-negotiation", "list", bytes([2, 0]) + greeting + option_reply(3, 2, nbd_string("disk") + b"the disk")
     + option_reply(3, 2, nbd_string("")) + option_reply(3, 1) + option_reply(6, 3, info_export) + option_reply(6, 1)
     + option_reply(6, 0x80000006, b"unknown export"))
seed("client-negotiation", "info", bytes([1, 1]) + greeting + option_reply(11, 1) + ctx
     + option_reply(6, 3, info_export) + option_reply(6, 3, struct.pack(">H", 1) + b"disk") + option_reply(6, 3, struct.pack(">H", 2) + b"descr")
     + option_reply(6, 1))
seed("client-negotiation", "export-name-fallback", bytes([0x30, 1]) + greeting + option_reply(7, 0x80000001) + struct.pack(">QH", 1 << 20, 3) + b"\0" * 124)
seed("client-negotiation", "oldstyle", bytes([0, 0]) + b"NBDMAGIC" + struct.pack(">QQI", 0x00420281861253, 1 << 20, 3) + b"\0" * 124)
seed("client-negotiation", "errors", bytes([0x40, 1]) + greeting + option_reply(11, 0x80000005, b"policy")
     + option_reply(9, 4, struct.pack(">I", 0) + b"base:allocation") + option_reply(9, 1)
     + option_reply(7, 0x80000003, b"no such export"))

# --- client-replies: [selector] + replies to cookies 1.. (see ClientFuzzEntryPoints.replyStream)
data4k = bytes(range(256)) * 16
seed("client-replies", "simple", bytes([0]) + simple_reply(1) + data4k + simple_reply(2) + b"\0" * 512 + simple_reply(3) + simple_reply(4, 5))
for extended, sel in ((False, 1 | 4), (True, 2 | 4)):
    kind = "extended" if extended else "structured"
    status = (struct.pack(">II", 1, 1) + struct.pack(">QQ", 65536, 0)) if extended else (struct.pack(">I", 1) + struct.pack(">II", 32768, 0) + struct.pack(">II", 32768, 3))
    depth = (struct.pack(">II", 2, 1) + struct.pack(">QQ", 65536, 1)) if extended else (struct.pack(">I", 2) + struct.pack(">II", 65536, 1))
    st = 6 if extended else 5
    body = (chunk(1, 1, struct.pack(">Q", 0) + data4k[:2048], extended=extended)
            + chunk(1, 2, struct.pack(">QI", 2048, 2048), flags=DONE, extended=extended)
            + chunk(2, 1, struct.pack(">Q", 8192) + b"\1" * 512, flags=DONE, extended=extended)
            + chunk(3, st, status, extended=extended) + chunk(3, st, depth, extended=extended) + chunk(3, 0, b"", flags=DONE, extended=extended)
            + chunk(4, 0, b"", flags=DONE, extended=extended)
            + chunk(5, 0x8001, struct.pack(">IH", 5, 2) + b"io", flags=DONE, extended=extended))
    seed("client-replies", kind, bytes([sel]) + body)
    seed("client-replies", kind + "-errors", bytes([sel]) + chunk(1, 0x8002, struct.pack(">IH", 5, 0) + struct.pack(">Q", 100), extended=extended)
         + chunk(1, 0, b"", flags=DONE, extended=extended) + chunk(2, 0x8001, struct.pack(">IH", 28, 4) + b"full", flags=DONE, extended=extended)
         + (simple_reply(3, 22) if not extended else b"") + chunk(4, 0x4242, b"\0" * 8, flags=DONE, extended=extended))
seed("client-replies", "structured-no-contexts", bytes([1]) + chunk(1, 1, struct.pack(">Q", 0) + data4k, flags=DONE)
     + simple_reply(2, 5) + simple_reply(3) + simple_reply(4))

# --- transmission: [selector] + requests ---------------------------------------------------------
for sel, extended in ((0, False), (1, False), (2, True), (1 | 0x10, False), (2 | 4, True), (1 | 0x20, False)):
    r = lambda *a, **k: request(*a, extended=extended, **k)
    payload = b"\xab" * 4096
    stream = (r(1, 1, 4096, 4096, flags=1) + payload + r(0, 2, 0, 16384) + r(0, 3, 0, 65536, flags=4)
              + r(7, 4, 0, 1 << 20) + r(7, 5, 0, 1 << 20, flags=8) + r(4, 6, 4096, 4096) + r(6, 7, 0, 8192, flags=2)
              + r(6, 8, 0, 8192, flags=16) + r(5, 9, 0, 4096) + r(3, 10, 0, 0) + r(0, 11, (1 << 20) - 512, 1024)
              + r(2, 12, 0, 0))
    seed("transmission", f"session-{sel:02x}", bytes([sel]) + stream)
seed("transmission", "bad-magic", bytes([1]) + b"\0" * 28)
seed("transmission", "write-payload-len", bytes([2]) + request(1, 1, 0, 512, flags=32, extended=True) + b"\1" * 512)

# --- uri ------------------------------------------------------------------------------------------
for i, u in enumerate([
    "nbd://127.0.0.1/vda", "nbd://127.0.0.1/", "nbds://nbd.example.com/vda?tls-certificates=CLIENT_PKI",
    "nbds://alice@nbd.example.com/NAME?tls-psk-file=DIR/keys.psk", "nbd+unix:///vda?socket=/run/nbd.sock",
    "nbds+unix:///export?socket=PATH&tls-certificates=pki", "nbd://[::1]:10810/disk", "nbds://h/%E2%82%AC?tls-verify-peer=false",
    "nbd://h//disk", "nbds://host/vda?tls-certificates=pki&tls-hostname=nbd.example.com", "nbd:///x", "nbd://h:65535",
    "nbds://alice@h:1234/e?TLS-PSK-FILE=/k", "nbd+vsock://1", "nbd://h/hello%20world#frag",
]):
    seed("uri", f"uri-{i:02d}", u)

# --- psk-file -------------------------------------------------------------------------------------
seed("psk-file", "one", "alice:6cc03e5d5ba2f2e9a7ce2b2e9a3bd4c9e9f2fda5b9a3e4f0d3a7c6b5a4f3e2d1\n")
seed("psk-file", "many", "# keys\nalice:00112233\r\n\nbob:DEADBEEF\n \t\ncarol:0a\n")
seed("psk-file", "bad", "alice\n:00\nx:0g\ny:123\n")

# --- distinguished-name: pattern NUL subject --------------------------------------------------------
for i, (a, b) in enumerate([
    ("CN=laptop,O=SwiftNBD", "O=SwiftNBD,CN=laptop"), ("CN=a\\,b+O=c", "CN=a\\2cb,O=c"),
    ("C=GB,ST=London,L=London,O=Example,CN=client", "CN=client,O=Example,L=London,ST=London,C=GB"),
    ("2.5.4.3=x\\ ", "CN= x "), ("CN=\\\"quoted\\\"", "CN=#04"),
]):
    seed("distinguished-name", f"dn-{i}", a + "\0" + b)

# --- qmp: QEMU's monitor stream (0xff marks read boundaries) -----------------------------------------
greet = '{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""}, "capabilities": ["oob"]}}\r\n'
seed("qmp", "handshake", greet + '{"return": {}, "id": "swiftnbd-1"}\r\n')
seed("qmp", "events", greet.encode() + b"\xff" + b'{"timestamp": {"seconds": 1700000000, "microseconds": 5}, "event": "BLOCK_JOB_READY", "data": {"device": "mig", "len": 1048576, "offset": 1048576, "speed": 0, "type": "mirror"}}\r\n'
     + b'{"return": [{"device": "mig", "len": 10, "offset": 5, "busy": true, "ready": false, "io-status": "ok"}], "id": "swiftnbd-2"}\r\n')
seed("qmp", "error", greet + '{"error": {"class": "GenericError", "desc": "Device \'x\' not found"}, "id": "swiftnbd-1"}\r\n{"return": 1.5e3}\r\n')
seed("qmp", "escapes", greet + '{"return": "\\u00e9\\ud83d\\ude00\\n\\"", "id": "swiftnbd-2"}\n{"return": [null, true, false, -9223372036854775808, 18446744073709551615]}\n')

# --- dictionaries --------------------------------------------------------------------------------------
def hexbytes(b):
    return "".join(f"\\x{c:02x}" for c in b)


nbd_words = {
    "nbdmagic": b"NBDMAGIC", "ihaveopt": IHAVEOPT, "opt_reply_magic": struct.pack(">Q", OPT_REPLY_MAGIC),
    "oldstyle_magic": struct.pack(">Q", 0x00420281861253),
    "request_magic": struct.pack(">I", 0x25609513), "ext_request_magic": struct.pack(">I", 0x21E41C71),
    "simple_reply_magic": struct.pack(">I", 0x67446698), "structured_reply_magic": struct.pack(">I", 0x668E33EF),
    "extended_reply_magic": struct.pack(">I", 0x6E8A278C),
    "base_allocation": b"base:allocation", "allocation_depth": b"qemu:allocation-depth", "qemu_prefix": b"qemu:",
    "dirty_bitmap": b"qemu:dirty-bitmap:", "base_prefix": b"base:",
    "max_u32": b"\xff\xff\xff\xff", "max_u64": b"\xff" * 8, "len_32m": struct.pack(">I", 1 << 25),
}
for n in range(1, 12):
    nbd_words[f"opt_{n}"] = struct.pack(">I", n)
for n in [1, 2, 3, 4, 0x80000001, 0x80000002, 0x80000003, 0x80000004, 0x80000005, 0x80000006, 0x80000007, 0x80000008]:
    nbd_words[f"rep_{n:x}"] = struct.pack(">I", n)
for n in range(0, 4):
    nbd_words[f"info_{n}"] = struct.pack(">H", n)
for n in [0, 1, 2, 3, 5, 6, 0x8001, 0x8002]:
    nbd_words[f"chunk_{n:x}"] = struct.pack(">H", n)
for n in range(0, 8):
    nbd_words[f"cmd_{n}"] = struct.pack(">H", n)

os.makedirs(os.path.join(ROOT, "dict"), exist_ok=True)
for target in ["server-negotiation", "client-negotiation", "client-replies", "transmission"]:
    with open(os.path.join(ROOT, "dict", f"{target}.dict"), "w") as f:
        f.write(f"# NBD magics, option/reply/info/chunk/command numbers (big-endian) for {target}\n")
        for key, value in nbd_words.items():
            f.write(f'{key}="{hexbytes(value)}"\n')

qcow2_words = {
    "magic": b"QFI\xfb", "v2": struct.pack(">I", 2), "v3": struct.pack(">I", 3),
    "ext_end": b"\0\0\0\0", "ext_backing_format": struct.pack(">I", 0xE2792ACA),
    "ext_feature_names": struct.pack(">I", 0x6803F857), "ext_bitmaps": struct.pack(">I", 0x23852875),
    "ext_crypto": struct.pack(">I", 0x0537BE77), "ext_data_file": struct.pack(">I", 0x44415441),
    "copied": b"\x80\0\0\0\0\0\0\0", "compressed": b"\x40\0\0\0\0\0\0\0", "zero_flag": b"\0\0\0\0\0\0\0\x01",
    "raw": b"raw", "qcow2": b"qcow2", "base_raw": b"base.raw", "base_qcow2": b"base.qcow2", "image": b"image.qcow2",
    "cluster_bits_9": struct.pack(">I", 9), "cluster_bits_16": struct.pack(">I", 16), "cluster_bits_21": struct.pack(">I", 21),
    "refcount_order_4": struct.pack(">I", 4), "header_len_104": struct.pack(">I", 104), "header_len_112": struct.pack(">I", 112),
    "incompat_extl2": b"\0\0\0\0\0\0\0\x10", "incompat_compression": b"\0\0\0\0\0\0\0\x08", "incompat_dirty": b"\0\0\0\0\0\0\0\x01",
    "all_ones_64": b"\xff" * 8,
}
with open(os.path.join(ROOT, "dict", "qcow2.dict"), "w") as f:
    f.write("# qcow2 magic, versions, header extension magics, L1/L2 flag bits, backing names\n")
    for key, value in qcow2_words.items():
        f.write(f'{key}="{hexbytes(value)}"\n')

with open(os.path.join(ROOT, "dict", "uri.dict"), "w") as f:
    f.write("# NBD URI schemes and query keys\n")
    for i, w in enumerate(["nbd://", "nbds://", "nbd+unix://", "nbds+unix://", "nbd+vsock://", "socket=", "tls-certificates=",
                           "tls-psk-file=", "tls-verify-peer=", "tls-hostname=", "%2F", "%00", "%", "[::1]", ":10809", "@", "?", "&", "#", "//"]):
        f.write(f'w{i}="{w}"\n')
with open(os.path.join(ROOT, "dict", "qmp.dict"), "w") as f:
    f.write("# QMP members and JSON tokens\n")
    for i, w in enumerate(['"QMP"', '"return"', '"error"', '"event"', '"id"', '"class"', '"desc"', '"data"', '"timestamp"',
                           '"seconds"', '"microseconds"', '"swiftnbd-1"', '"swiftnbd-2"', "\\u0000", "\\ud800", "1e999", "-0",
                           "null", "true", "false", "[", "{", "\\r\\n"]):
        f.write(f'w{i}="{w.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"\n')
with open(os.path.join(ROOT, "dict", "distinguished-name.dict"), "w") as f:
    f.write("# DN attribute types and escapes\n")
    for i, w in enumerate(["CN=", "O=", "OU=", "C=", "ST=", "L=", "DC=", "2.5.4.3=", "\\,", "\\+", "\\\\", "\\2c", "\\ ", "#", "\\x00"]):
        f.write(f'w{i}="{w.replace(chr(92), chr(92) * 2)}"\n')
