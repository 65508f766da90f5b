"""The reader on stores with expiring keys, against the Go engine (goview)
at the same instants: what is hidden, what has expired, what is left."""

import base64
import binascii
import json
import os
import struct
import subprocess
import time

import pytest

from conftest import run_simdr
from simdr import Reader, key_hash, xxh3_64

PREFIX = b"\x00simdr.ttl\x00"
MARKER = xxh3_64(PREFIX)


def record_hash(key):
    return xxh3_64(PREFIX + struct.pack("<Q", key_hash(key)))


def go_view(goview_bin, path, now_ms, keys):
    p = subprocess.run([goview_bin, path, str(now_ms), *keys], capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr.decode(errors="replace")
    return json.loads(p.stdout)


def agree(goview_bin, path, now_ms, keys, hidden=None):
    """The reader at now_ms sees what the Go engine sees, and hides the
    hashes hidden (default: the marker and the records of keys); returns
    Go's view."""
    if hidden is None:
        hidden = [MARKER] + [record_hash(k) for k in keys]
    g = go_view(goview_bin, path, now_ms, keys)
    with Reader(path, clock=lambda: now_ms / 1000) as r:
        assert len(r) == g["len"], now_ms
        assert sorted(format(h, "016x") for h in r.hashes()) == g["hashes"], now_ms
        assert sorted(format(h, "016x") for h, _ in r.items()) == g["hashes"]
        assert sorted(format(h, "016x") for h in r) == g["hashes"]
        assert r.is_empty() == (g["len"] == 0)
        for k in keys:
            want = g["keys"][k]
            got = r.get(k)
            if want is None:
                assert got is None and k not in r and r.offset(k) is None, (k, now_ms)
                assert r.get_hash(key_hash(k)) is None
                with pytest.raises(KeyError):
                    r.ttl(k)
                continue
            assert got is not None and bytes(got) == base64.b64decode(want["value_b64"]), (k, now_ms)
            assert k in r and r.offset(k) % 64 == 0
            ttl = r.ttl(k)
            if want["ttl_ms"] is None:
                assert ttl is None, k
            else:
                assert ttl is not None and round(ttl * 1000) == want["ttl_ms"], (k, ttl, want)
            got.release()
        # the records and their marker never show
        for h in hidden:
            assert r.get_hash(h) is None
            assert h not in r.hashes()
    return g


def go_ttl_store(simdr_bin, path):
    """A store the Go CLI wrote with expiring keys, and the keys to ask about."""
    run_simdr(simdr_bin, path, "write", "plain", "never expires")
    run_simdr(simdr_bin, path, "write", "s1", "one hour", "--ttl", "1h")
    run_simdr(simdr_bin, path, "write", "s2", "two hours", "--ttl", "2h")
    run_simdr(simdr_bin, path, "write", "over", "was expiring", "--ttl", "1h")
    run_simdr(simdr_bin, path, "write", "over", "written again, no ttl")
    run_simdr(simdr_bin, path, "write", "over2", "first no ttl")
    run_simdr(simdr_bin, path, "write", "over2", "then a ttl", "--ttl", "30m")
    run_simdr(simdr_bin, path, "write", "del", "deleted", "--ttl", "1h")
    run_simdr(simdr_bin, path, "delete", "del")
    ops = [{"op": "put", "key": "b1", "value": "batch 90m", "ttl_ms": 90 * 60000},
           {"op": "put", "key": "b2", "value": "batch, no ttl"},
           {"op": "put", "key": "b3", "value_b64": base64.b64encode(bytes(32)).decode(), "ttl_ms": 45 * 60000}]
    run_simdr(simdr_bin, path, "batch", input="\n".join(json.dumps(o) for o in ops).encode())
    run_simdr(simdr_bin, path, "write", "big", "--ttl", "3h", input=os.urandom(3 << 20))
    return ["plain", "s1", "s2", "over", "over2", "del", "b1", "b2", "b3", "big", "missing"]


@pytest.mark.parametrize("compacted", [False, True])
def test_go_written_ttl_store(simdr_bin, goview_bin, tmp_path, compacted):
    path = str(tmp_path / "ttl.simdr")
    keys = go_ttl_store(simdr_bin, path)
    if compacted:
        run_simdr(simdr_bin, path, "compact")
    now = int(time.time() * 1000)
    g = agree(goview_bin, path, now, keys)
    assert g["len"] == 9 and g["keys"]["del"] is None and g["keys"]["over"]["ttl_ms"] is None
    assert g["keys"]["over2"]["ttl_ms"] is not None
    # Every instant where something changes, and either side of it: the
    # expiries as Go reports them at now.
    exps = sorted({now + v["ttl_ms"] for v in g["keys"].values() if v and v["ttl_ms"]})
    assert len(exps) == 6
    for t in [now - 10 * 365 * 86400000] + [e + d for e in exps for d in (-1, 0, 1)] + [exps[-1] + 86400000]:
        agree(goview_bin, path, t, keys)
    assert go_view(goview_bin, path, exps[-1], keys)["len"] == 3  # plain, over, b2


def test_clock_never_goes_back(simdr_bin, tmp_path):
    path = str(tmp_path / "ttl.simdr")
    run_simdr(simdr_bin, path, "write", "k", "v", "--ttl", "1h")
    t = [time.time()]
    with Reader(path, clock=lambda: t[0]) as r:
        assert "k" in r and 3590 < r.ttl("k") <= 3600
        t[0] += 7200
        assert "k" not in r and len(r) == 0
        t[0] -= 7200  # the clock is set back: k stays expired
        assert "k" not in r and r.get("k") is None and len(r) == 0


def append_entry(path, h, payload):
    """Append one value entry under hash h, as any writer of the format
    would (FORMAT.md): zeros to the 64-byte boundary, the payload, the
    metadata."""
    with open(path, "r+b") as f:
        f.seek(0, os.SEEK_END)
        tail = f.tell()
        f.write(bytes((64 - tail % 64) % 64))
        f.write(payload)
        f.write(struct.pack("<QQI", h, tail, binascii.crc32(payload)))
        return f.tell() - 20  # where the payload ends


def record(key, bound, exp):
    return b"simdrTTL" + struct.pack("<QQQ", key_hash(key), bound, exp)


def test_records_written_by_others(simdr_bin, goview_bin, tmp_path):
    """Records the reader must not take for records, or must not apply,
    exactly as the Go engine does not."""
    far = int(time.time() * 1000) + 10 * 86400000
    # A file without the marker: a record-shaped value is a plain value.
    plain = str(tmp_path / "plain.simdr")
    run_simdr(simdr_bin, plain, "write", "k", "v")
    append_entry(plain, record_hash("k"), record("k", 1, 5))
    with Reader(plain) as r:
        assert r.get_hash(record_hash("k")) is not None and len(r) == 2
    agree(goview_bin, plain, far, ["k"], hidden=[])
    # A marked file (Go wrote a ttl), then entries another writer appended.
    path = str(tmp_path / "ttl.simdr")
    run_simdr(simdr_bin, path, "write", "k", "v", "--ttl", "1h")
    run_simdr(simdr_bin, path, "write", "j", "w")
    # k written again by a writer that knows nothing of records: its old
    # record no longer binds it.
    end_k = append_entry(path, key_hash("k"), b"new k")
    # j given a record by hand, bound to j's value: j now expires.
    with Reader(path) as r:
        end_j = r.offset("j") + 1
    append_entry(path, record_hash("j"), record("j", end_j, 1000))
    # a record under the wrong hash, one with a bad bound, one with an
    # expiry past the engine's bound: plain values.
    append_entry(path, key_hash("x"), record("j", end_j, 1000))
    append_entry(path, record_hash("y"), record("y", 0, 1000))
    append_entry(path, record_hash("z"), record("z", end_k, 1 << 62))
    for t in (1, 999, 1000, far):
        g = agree(goview_bin, path, t, ["k", "j", "x", "y", "z"], hidden=[MARKER, record_hash("k"), record_hash("j")])
        assert g["keys"]["k"] is not None and g["keys"]["k"]["ttl_ms"] is None
        assert (g["keys"]["j"] is None) == (t >= 1000)
    with Reader(path, clock=lambda: far / 1000) as r:
        assert r.get_hash(key_hash("x")) is not None
        assert r.get_hash(record_hash("y")) is not None and r.get_hash(record_hash("z")) is not None


def test_reader_sees_server_ttls(server):
    from simdr import Client
    c = Client(server.url)
    c.write("s", b"session", ttl=600)
    c.batch_write({"b": b"batch"}, ttl=1200)
    c.write("p", b"plain")
    now = time.time()
    with Reader(server.path, clock=lambda: now) as r:
        assert bytes(r["s"]) == b"session" and 0 < r.ttl("s") <= 600
        assert 600 < r.ttl("b") <= 1200 and r.ttl("p") is None
        assert len(r) == len(c) == 3
    with Reader(server.path, clock=lambda: now + 900) as r:
        assert "s" not in r and "b" in r and len(r) == 2
    c.close()
