import binascii
import json
import os

from conftest import VECTORS
from simdr import xxh3_64, key_hash

# every length class of XXH3-64
CLASSES = [(0, 0), (1, 3), (4, 8), (9, 16), (17, 128), (129, 240), (241, 2100)]


def test_hashes_json():
    with open(os.path.join(VECTORS, "hashes.json")) as f:
        d = json.load(f)
    assert len(d["vectors"]) >= 12
    for v in d["vectors"]:
        data = bytes.fromhex(v["input_hex"])
        assert format(xxh3_64(data), "016x") == v["xxh3_64"], v
        assert binascii.crc32(data).to_bytes(4, "little").hex() == v["crc32_le_bytes_hex"], v
    ns = d["namespace"]
    assert format(key_hash(bytes.fromhex(ns["namespaced_key_hex"])), "016x") == ns["store_key_hash"]


def test_every_length_0_2100():
    seen = {c: 0 for c in CLASSES}
    with open(os.path.join(VECTORS, "hash_lengths_0_2100.txt")) as f:
        lines = f.read().split("\n")
    lines = [l for l in lines if l.strip()]
    assert len(lines) == 2101
    pattern = bytes((j * 31 + 7) % 256 for j in range(2100))
    for line in lines:
        n, h, crc = line.split()
        n = int(n)
        data = pattern[:n]
        assert format(xxh3_64(data), "016x") == h, f"length {n}"
        assert binascii.crc32(data).to_bytes(4, "little").hex() == crc, f"length {n}"
        for lo, hi in CLASSES:
            if lo <= n <= hi:
                seen[(lo, hi)] += 1
    assert all(seen.values()), seen


def test_reference_values_and_input_types():
    assert xxh3_64(b"") == 0x2D06800538D394C2
    assert xxh3_64(b"k1") == 0x81AFBF86B72A36C5
    assert key_hash("alice") == 0x4DA10DD61A0116B0
    assert xxh3_64(bytearray(b"alice")) == xxh3_64(memoryview(b"xalice")[1:]) == 0x4DA10DD61A0116B0
