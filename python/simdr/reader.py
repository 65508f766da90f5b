"""A read-only reader of simdr store files, in pure Python (mmap + struct).

It follows FORMAT.md: the file is a chain of entries linked backwards from
its tail; the first time a key hash is met walking back is the key's latest
state. Values are returned as zero-copy memoryviews over the file's mapping
(numpy.frombuffer on one shares the mapping's memory).

Expiring keys (the Go engine's PutTTL) are read as the Go engine reads them
(its expiry.go): the expiry of a key is an entry of its own, a 32-byte
record stored under a reserved key hash, and the records are hidden, as is
the marker entry that says a file has them; a key whose expiry has passed,
by the reader's clock, is absent.
"""

import binascii
import mmap
import os
import struct
import time

from .xxh3 import xxh3_64

__all__ = ["Reader", "CorruptError", "key_hash", "TOMBSTONE_CRC"]

META = 20
ALIGN = 64
TOMBSTONE_CRC = 0xD202EF8D
_meta = struct.Struct("<QQI").unpack_from
_u64 = struct.Struct("<Q").unpack_from
_record = struct.Struct("<8sQQQ").unpack_from

# Expiry records (the Go engine's expiry.go). A record is 32 bytes: "simdrTTL",
# the key hash it is for, where the payload of the value it binds ends in the
# file, and when that value expires (Unix milliseconds), little endian. It is
# stored under the hash of RESERVED_PREFIX + the key hash (le64); the marker,
# a value under the hash of RESERVED_PREFIX, says the file has records. A
# record binds the key's value ending at that offset only: a later value of
# the key does not expire by it.
RESERVED_PREFIX = b"\x00simdr.ttl\x00"
_RECORD_SIZE = 32
_RECORD_MAGIC = b"simdrTTL"
_MAX_EXPIRY = (1 << 62) - 1
_MARKER_HASH = xxh3_64(RESERVED_PREFIX)


def _record_hash(h):
    return xxh3_64(RESERVED_PREFIX + struct.pack("<Q", h))


class CorruptError(ValueError):
    """The file is not empty but holds no valid entry chain (FORMAT.md: open
    fails and the file is left untouched)."""


def key_hash(key):
    """The 64-bit hash simdr stores for key (bytes, or str as UTF-8)."""
    if isinstance(key, str):
        key = key.encode("utf-8")
    return xxh3_64(key)


def _prepad(x):
    return (ALIGN - x % ALIGN) % ALIGN


def _decode(data, tail):
    """The entry whose metadata ends at tail: (start, end, hash, prev, crc,
    tombstone), or None when no entry can end there (structure only)."""
    if tail < META + 1 or tail > len(data):
        return None
    end = tail - META
    h, prev, crc = _meta(data, end)
    if prev >= end:
        return None
    if end - prev == 1 and data[prev] == 0:
        return (prev, end, h, prev, crc, True)
    start = prev + _prepad(prev)
    if start >= end:
        return None
    return (start, end, h, prev, crc, False)


def _valid(data, e):
    start, end, _, _, crc, tomb = e
    if tomb:
        return crc == TOMBSTONE_CRC
    return binascii.crc32(data[start:end]) == crc


class _Memo:
    def __init__(self):
        self.bad = set()
        self.good = set()


def _chain(data, tail, memo=None):
    """Whether a valid chain ends at tail and steps strictly down to 0, the
    entry ending at tail passing its checksum (as the Go engine checks it:
    also tombstones and first entries along the way)."""
    if tail == 0:
        return True
    first = _decode(data, tail)
    if first is None or bytes(data[first[1]:tail]) == bytes(META):
        return False
    t = first[3]
    while t > 0:
        if memo is not None:
            if t in memo.good:
                t = 0
                break
            if t in memo.bad:
                break
        e = _decode(data, t)
        if e is None:
            break
        if (e[5] or e[3] == 0) and not _valid(data, e):
            break
        t = e[3]
    if t != 0:
        if memo is not None:
            u = first[3]
            while u > t:
                memo.bad.add(u)
                u = _decode(data, u)[3]
            memo.bad.add(t)
        return False
    if _valid(data, first):
        return True
    if memo is not None:
        u = first[3]
        while u > 0 and u not in memo.good:
            memo.good.add(u)
            u = _decode(data, u)[3]
    return False


def find_tail(data):
    """The largest L ≤ len(data) at which a valid chain ends (FORMAT.md), or
    None when data is not empty and no chain can be found."""
    n = len(data)
    if n == 0:
        return 0
    if _chain(data, n):
        return n
    memo = _Memo()
    for L in range(n - 1, 0, -1):
        if L < META + 1:
            continue
        p = _u64(data, L - 12)[0]
        if p >= L - META:
            continue
        if _chain(data, L, memo):
            return L
    return None


class Reader:
    """A read-only view of a simdr store file, as it was when opened.

    Reader(path) maps the file and walks its chain from the end. A torn or
    garbage tail is ignored (never cut: the file is not written), exactly as
    the Go engine would recover it: the reader stops at the largest offset
    where a valid chain ends whose newest entry's CRC-32 matches. A
    non-empty file with no valid chain raises CorruptError. Later writes by
    another process are not seen: open a new Reader.

    Keys are looked up by their XXH3-64 hash (keys themselves are not
    stored). Values are memoryviews over the read-only mapping, zero-copy
    (they cannot be written to); each keeps the mapping alive as long as it
    is referenced, even past close().

    Attributes: path, file_size (bytes in the file), tail (where its valid
    entries end; less than file_size for a torn or garbage tail), entries
    and tombstones (every value entry and delete marker in the chain,
    expiry records and their marker included, as the Go engine counts
    them).

    Expiring keys: clock is a function returning the time in seconds since
    the epoch (default time.time). A key whose value expires is absent from
    every read (get, in, len, hashes, items, offset) once the clock reaches
    its expiry; as in the Go engine, a clock that goes back does not bring
    a key back that this Reader already found expired. The expiry records
    and their marker never show. ttl(key) tells how long a key has left.
    """

    def __init__(self, path, clock=None):
        self.path = os.fspath(path)
        self._clock = time.time if clock is None else clock
        self._seen = 0  # the latest time _now returned (ms)
        self._f = open(self.path, "rb")
        try:
            size = os.fstat(self._f.fileno()).st_size
            self.file_size = size
            if size == 0:
                self._mm = None
                self._view = memoryview(b"")
            else:
                self._mm = mmap.mmap(self._f.fileno(), size, access=mmap.ACCESS_READ)
                self._view = memoryview(self._mm)
            tail = find_tail(self._view)
            if tail is None:
                raise CorruptError(f"{self.path}: no valid entry chain in {size} bytes")
            self.tail = tail
            self._build()
        except BaseException:
            self.close()
            raise

    def _build(self):
        data = self._view
        index = {}  # hash -> (start, end) or None (deleted)
        order = []  # live hashes, newest first
        entries = tombstones = 0
        t = self.tail
        while t > 0:
            e = _decode(data, t)
            start, end, h, prev, _, tomb = e
            entries += 1
            tombstones += tomb
            if h not in index:
                index[h] = None if tomb else (start, end)
                if not tomb:
                    order.append(h)
            t = prev
        self._index = index
        self._order = order
        self.entries = entries - tombstones
        self.tombstones = tombstones
        self._hidden, self._expiry = self._load_expiry()

    def _load_expiry(self):
        """The hashes the Go engine hides (records and the marker) and the
        expiry (Unix ms) of each key whose current value has one, read as
        the Go engine's loadExpiry reads them: only in a file with the
        marker, from live 32-byte values that decode as a record stored
        under the hash the record names."""
        index = self._index
        if index.get(_MARKER_HASH) is None:
            return frozenset(), {}
        hidden = {_MARKER_HASH}
        records = []
        data = self._view
        for h in self._order:
            start, end = index[h]
            if end - start != _RECORD_SIZE:
                continue
            magic, kh, bound, exp = _record(data, start)
            if (magic == _RECORD_MAGIC and 0 < bound < 1 << 63 and 0 < exp <= _MAX_EXPIRY
                    and _record_hash(kh) == h):
                hidden.add(h)
                records.append((kh, bound, exp))
        expiry = {}
        for kh, bound, exp in records:
            loc = index.get(kh)
            if loc is not None and loc[1] == bound and kh not in hidden:
                expiry[kh] = exp
        return frozenset(hidden), expiry

    def _now(self):
        """The clock in Unix ms (rounded: a clock given in exact milliseconds
        is read as those, whatever the float rounding of seconds), never less
        than a time returned before."""
        t = round(self._clock() * 1000)
        if t > self._seen:
            self._seen = t
        return self._seen

    def _live(self, h):
        """The (start, end) of h's value, or None when it has none, is
        hidden or has expired."""
        loc = self._index.get(h)
        if loc is None or h in self._hidden:
            return None
        exp = self._expiry.get(h)
        if exp is not None and exp <= self._now():
            return None
        return loc

    def _visible(self):
        """The live key hashes readers see, newest first."""
        if not self._hidden:
            return self._order
        now = self._now()
        hidden, expiry = self._hidden, self._expiry
        return [h for h in self._order if h not in hidden and expiry.get(h, now + 1) > now]

    def ttl(self, key):
        """How long key's value has left before it expires, in seconds (whole
        milliseconds), or None when it has no expiry; KeyError when the key
        is absent or has expired."""
        h = key_hash(key)
        if self._live(h) is None:
            raise KeyError(key)
        exp = self._expiry.get(h)
        return None if exp is None else (exp - self._now()) / 1000

    def close(self):
        """Close the file and drop the mapping. Values still referenced keep
        the mapping alive (Python cannot unmap memory under a live
        memoryview): it is unmapped when the last of them is released or
        collected, so a value stays valid and safe for as long as it is
        referenced. Closing twice is harmless."""
        view = getattr(self, "_view", None)
        if view is not None:
            view.release()
        mm = getattr(self, "_mm", None)
        if mm is not None:
            try:
                mm.close()
            except BufferError:
                pass  # views are alive: the mmap object is unmapped when they go
            self._mm = None
        f = getattr(self, "_f", None)
        if f is not None:
            f.close()
            self._f = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _value(self, loc):
        if self._mm is None:
            raise ValueError("simdr: Reader is closed")
        start, end = loc
        return memoryview(self._mm)[start:end]

    def get_hash(self, h):
        """The value stored under key hash h, or None."""
        loc = self._live(h)
        return None if loc is None else self._value(loc)

    def get(self, key, default=None):
        """The latest value of key (bytes or str) as a read-only memoryview
        over the mapping, zero-copy; default when the key is absent, deleted
        or expired."""
        loc = self._live(key_hash(key))
        return default if loc is None else self._value(loc)

    read = get

    def __getitem__(self, key):
        v = self.get(key)
        if v is None:
            raise KeyError(key)
        return v

    def __contains__(self, key):
        return self._live(key_hash(key)) is not None

    exists = __contains__

    def __len__(self):
        """The number of live keys (expired ones not counted)."""
        if not self._hidden:
            return len(self._order)
        now = self._now()
        expired = sum(1 for exp in self._expiry.values() if exp <= now)
        return len(self._order) - len(self._hidden) - expired

    def is_empty(self):
        return len(self) == 0

    def hashes(self):
        """The key hashes of the live keys, newest first (the Go engine's and
        the Rust original's iteration order)."""
        return list(self._visible())

    def items(self):
        """Yield (key_hash, memoryview) for every live key, newest first
        (which keys have expired is decided when iteration starts)."""
        for h in self._visible():
            yield h, self._value(self._index[h])

    def __iter__(self):
        """Iterate over the live key hashes, newest first."""
        return iter(self._visible())

    def offset(self, key):
        """The file offset of key's value (64-byte aligned), or None."""
        loc = self._live(key_hash(key))
        return None if loc is None else loc[0]

    def verify(self):
        """Check every live value's CRC-32 (expiry records included, as the
        Go engine's Verify checks every entry); return the hashes that
        fail."""
        bad = []
        for h in self._order:
            start, end = self._index[h]
            crc = _meta(self._view, end)[2]
            if binascii.crc32(self._view[start:end]) != crc:
                bad.append(h)
        return bad
