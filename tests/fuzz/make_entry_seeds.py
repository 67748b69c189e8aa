#!/usr/bin/env python3
"""Writes corpus/fuzz_entry_codec/ seeds: entries in format v2 (cache/entry_codec.hpp),
and one in v1 (still read), behind a 0x00 byte (decode mode), and one 0x01 seed
(build-and-encode mode)."""
import os, struct, zlib

def fnv1a(data):
    h = 2166136261
    for b in data:
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return h

def string(b):
    return struct.pack("<I", len(b)) + b

def entry(status, stored, expires, retain, headers, stamps, body, version=2):
    rest = struct.pack("<Hqqq", status, stored, expires, retain)
    rest += struct.pack("<I", len(headers)) + b"".join(string(n) + string(v) for n, v in headers)
    rest += struct.pack("<I", len(stamps)) + b"".join(string(c) + struct.pack("<Q", g) for c, g in stamps)
    rest += string(body)
    head = b"CCE" + bytes([version]) + struct.pack("<I", len(rest) + 4)
    value = head + rest
    checksum = fnv1a(value) if version == 1 else zlib.crc32(value)
    return value + struct.pack("<I", checksum)

t = 1_763_770_000_000_000_000  # ns ticks
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "fuzz_entry_codec")
os.makedirs(out, exist_ok=True)
seeds = {
    "json_200": entry(200, t, t + 300 * 10**9, t + 600 * 10**9,
                      [(b"Content-Type", b"application/json"), (b"ETag", b'"v1"')],
                      [(b"*", 3), (b"videos", 7)], b'{"videos":[1,2,3]}'),
    "empty_204": entry(204, 0, 0, 0, [], [(b"*", 0)], b""),
    "not_found": entry(404, t, t + 1, t + 1, [(b"Vary", b"Accept-Language")], [(b"*", 1), (b"video:42", 2)], b"nope"),
    "json_200_v1": entry(200, t, t + 300 * 10**9, t + 600 * 10**9,
                         [(b"Content-Type", b"application/json")], [(b"*", 3)], b'{"v":1}', version=1),
}
for name, data in seeds.items():
    with open(os.path.join(out, name + ".bin"), "wb") as f:
        f.write(b"\x00" + data)
with open(os.path.join(out, "bad_checksum.bin"), "wb") as f:
    v = bytearray(seeds["json_200"]); v[-1] ^= 0xFF
    f.write(b"\x00" + bytes(v))
with open(os.path.join(out, "build.bin"), "wb") as f:
    f.write(b"\x01" + b"Content-Type\\ text/plain\\ *\\ body bytes" + bytes([2, 1, 0, 0, 0, 0, 0, 0, 7]))
