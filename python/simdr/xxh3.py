"""XXH3-64 (seed 0, default secret) in pure Python.

simdr stores keys only as their XXH3-64 hash (see FORMAT.md), so the local
reader needs it to look a key up. This follows the reference algorithm
(xxHash's XXH3_64bits) for every length class: 0, 1-3, 4-8, 9-16, 17-128,
129-240 and more than 240 bytes. It is slow next to C (a few microseconds
for a short key, about 1 MB/s for long input) but exact.
"""

import struct

__all__ = ["xxh3_64"]

_M = 0xFFFFFFFFFFFFFFFF

_P32_1 = 0x9E3779B1
_P32_2 = 0x85EBCA77
_P32_3 = 0xC2B2AE3D
_P64_1 = 0x9E3779B185EBCA87
_P64_2 = 0xC2B2AE3D27D4EB4F
_P64_3 = 0x165667B19E3779F9
_P64_4 = 0x85EBCA77C2B2AE63
_P64_5 = 0x27D4EB2F165667C5
_PMX1 = 0x165667919E3779F9
_PMX2 = 0x9FB21C651E98DF25

_SECRET = bytes.fromhex(
    "b8fe6c3923a44bbe7c01812cf721ad1cded46de9839097db7240a4a4b7b3671f"
    "cb79e64eccc0e578825ad07dccff7221b8084674f743248ee03590e6813a264c"
    "3c2852bb91c300cb88d0658b1b532ea371644897a20df94e3819ef46a9deacd8"
    "a8fa763fe39c343ff9dcbbc7c70b4f1d8a51e04bcdb45931c89f7ec9d9787364"
    "eac5ac8334d3ebc3c581a0fffa1363eb170ddd51b7f0da49d316552629d4689e"
    "2b16be587d47a1fc8ff8b8d17ad031ce45cb3a8f95160428afd7fbcabb4b407e"
)
_SECRET_SIZE = 192
_STRIPE = 64
_STRIPES_PER_BLOCK = (_SECRET_SIZE - _STRIPE) // 8  # 16
_BLOCK = _STRIPE * _STRIPES_PER_BLOCK  # 1024

_u32 = struct.Struct("<I").unpack_from
_u64 = struct.Struct("<Q").unpack_from
_u64x2 = struct.Struct("<2Q").unpack_from
_u64x8 = struct.Struct("<8Q").unpack_from
# the secret's 64-bit words at every byte offset the long hash uses
_SEC8 = [_u64x8(_SECRET, off) for off in range(_SECRET_SIZE - _STRIPE + 1)]


def _s64(off):
    return _u64(_SECRET, off)[0]


def _xxh64_avalanche(h):
    h ^= h >> 33
    h = (h * _P64_2) & _M
    h ^= h >> 29
    h = (h * _P64_3) & _M
    return h ^ (h >> 32)


def _avalanche(h):
    h ^= h >> 37
    h = (h * _PMX1) & _M
    return h ^ (h >> 32)


def _rrmxmx(h, n):
    h ^= ((h << 49) | (h >> 15)) & _M ^ ((h << 24) | (h >> 40)) & _M
    h = (h * _PMX2) & _M
    h ^= (h >> 35) + n
    h = (h * _PMX2) & _M
    return h ^ (h >> 28)


def _fold(a, b):
    p = a * b
    return (p ^ (p >> 64)) & _M


def _mix16(data, off, soff):
    lo, hi = _u64x2(data, off)
    slo, shi = _u64x2(_SECRET, soff)
    return _fold(lo ^ slo, hi ^ shi)


def _swap64(x):
    return int.from_bytes(x.to_bytes(8, "little"), "big")


def xxh3_64(data):
    """Return the XXH3-64 hash (seed 0) of data (bytes-like) as an int."""
    data = memoryview(data).cast("B") if not isinstance(data, bytes) else data
    n = len(data)
    if n <= 16:
        if n > 8:
            lo = _u64(data, 0)[0] ^ (_s64(24) ^ _s64(32))
            hi = _u64(data, n - 8)[0] ^ (_s64(40) ^ _s64(48))
            acc = (n + _swap64(lo) + hi + _fold(lo, hi)) & _M
            return _avalanche(acc)
        if n >= 4:
            in1 = _u32(data, 0)[0]
            in2 = _u32(data, n - 4)[0]
            keyed = (in2 + (in1 << 32)) ^ (_s64(8) ^ _s64(16))
            return _rrmxmx(keyed, n)
        if n > 0:
            combined = (data[0] << 16) | (data[n >> 1] << 24) | data[n - 1] | (n << 8)
            bitflip = _u32(_SECRET, 0)[0] ^ _u32(_SECRET, 4)[0]
            return _xxh64_avalanche(combined ^ bitflip)
        return _xxh64_avalanche(_s64(56) ^ _s64(64))
    if n <= 128:
        acc = (n * _P64_1) & _M
        if n > 32:
            if n > 64:
                if n > 96:
                    acc += _mix16(data, 48, 96) + _mix16(data, n - 64, 112)
                acc += _mix16(data, 32, 64) + _mix16(data, n - 48, 80)
            acc += _mix16(data, 16, 32) + _mix16(data, n - 32, 48)
        acc += _mix16(data, 0, 0) + _mix16(data, n - 16, 16)
        return _avalanche(acc & _M)
    if n <= 240:
        acc = (n * _P64_1) & _M
        for i in range(8):
            acc += _mix16(data, 16 * i, 16 * i)
        acc = _avalanche(acc & _M)
        for i in range(8, n // 16):
            acc += _mix16(data, 16 * i, 16 * (i - 8) + 3)
        acc += _mix16(data, n - 16, 136 - 17)
        return _avalanche(acc & _M)
    return _hash_long(data, n)


def _accumulate(acc, data, off, soff):
    d = _u64x8(data, off)
    s = _SEC8[soff]
    for i in range(8):
        v = d[i]
        k = v ^ s[i]
        acc[i ^ 1] += v
        acc[i] = (acc[i] + (k & 0xFFFFFFFF) * (k >> 32)) & _M
    for i in range(8):
        acc[i] &= _M


def _scramble(acc):
    s = _SEC8[_SECRET_SIZE - _STRIPE]
    for i in range(8):
        a = acc[i]
        a ^= a >> 47
        a ^= s[i]
        acc[i] = (a * _P32_1) & _M


def _hash_long(data, n):
    acc = [_P32_3, _P64_1, _P64_2, _P64_3, _P64_4, _P32_2, _P64_5, _P32_1]
    blocks = (n - 1) // _BLOCK
    for b in range(blocks):
        base = b * _BLOCK
        for s in range(_STRIPES_PER_BLOCK):
            _accumulate(acc, data, base + s * _STRIPE, s * 8)
        _scramble(acc)
    base = blocks * _BLOCK
    stripes = ((n - 1) - base) // _STRIPE
    for s in range(stripes):
        _accumulate(acc, data, base + s * _STRIPE, s * 8)
    _accumulate(acc, data, n - _STRIPE, _SECRET_SIZE - _STRIPE - 7)
    result = (n * _P64_1) & _M
    for i in range(4):
        lo, hi = _u64x2(_SECRET, 11 + 16 * i)
        result += _fold(acc[2 * i] ^ lo, acc[2 * i + 1] ^ hi)
    return _avalanche(result & _M)
