"""Expiring keys through the client: write(ttl=), batch ttls, ttl()."""

import datetime
import io
import math
import time

import pytest

from simdr import Client, NotFound, Reader, SimdrError


@pytest.fixture
def client(server):
    c = Client(server.url)
    yield c
    c.close()


def test_write_ttl(client, server):
    client.write("s", b"session", ttl=600)
    client.write("td", b"timedelta", ttl=datetime.timedelta(minutes=5))
    client.write("frac", b"fraction", ttl=600.0005)  # 600001 ms, rounded up
    client.write("p", b"plain")
    assert client.read("s") == b"session"
    assert 590 < client.ttl("s") <= 600
    assert 290 < client.ttl("td") <= 300
    assert 590 < client.ttl("frac") <= 600.001
    assert client.ttl("p") is None
    with pytest.raises(NotFound):
        client.ttl("missing")
    # written again without a ttl, it never expires
    client.write("s", b"again")
    assert client.ttl("s") is None
    # what the server stored: each expiry, to the millisecond, in the file
    now = time.time()
    with Reader(server.path, clock=lambda: now) as r:
        assert 290 < r.ttl("td") <= 300 and r.ttl("s") is None
    with Reader(server.path, clock=lambda: now + 301) as r:
        assert "td" not in r and "frac" in r and bytes(r["s"]) == b"again" and len(r) == 3
        assert 298.9 < r.ttl("frac") <= 299.001


def test_write_ttl_streamed(client):
    big = bytes(range(256)) * 8192  # 2 MiB: spooled by the server
    client.write("big", io.BytesIO(big), ttl=60)
    assert client.read("big") == big and 50 < client.ttl("big") <= 60


def test_batch_ttl(client):
    assert client.batch_write({"a": b"1", "b": b"2"}, ttl=60) == 2
    assert client.batch_write([("c", b"3", 120), ("d", b"4", None), ("e", b"5")]) == 3
    assert client.batch([("put", "f", b"6", datetime.timedelta(hours=1)), ("put", "g", b"7"), ("delete", "a")]) == 3
    assert client.read("a") is None
    assert 50 < client.ttl("b") <= 60 and 110 < client.ttl("c") <= 120
    assert client.ttl("d") is None and client.ttl("e") is None and client.ttl("g") is None
    assert 3590 < client.ttl("f") <= 3600


@pytest.mark.parametrize("bad,exc", [(0, ValueError), (-1, ValueError), (math.nan, ValueError),
                                     (math.inf, ValueError), (datetime.timedelta(0), ValueError),
                                     ("10m", TypeError), (True, TypeError)])
def test_bad_ttl(client, bad, exc):
    size = client.file_size()
    with pytest.raises(exc):
        client.write("k", b"v", ttl=bad)
    with pytest.raises(exc):
        client.batch_write({"k": b"v"}, ttl=bad)
    with pytest.raises(exc):
        client.batch([("put", "ok", b"v"), ("put", "k", b"v", bad)])
    assert client.file_size() == size and "k" not in client and "ok" not in client


def test_reserved_key_refused(client):
    for call in (lambda: client.write("\x00simdr.ttl\x00k", b"v"),
                 lambda: client.write(b"\x00simdr.ttl\x00k", b"v", ttl=5),
                 lambda: client.batch_write({"\x00simdr.ttl\x00k": b"v"}),
                 lambda: client.read("\x00simdr.ttl\x00k")):
        with pytest.raises(SimdrError) as e:
            call()
        assert e.value.status == 400 and e.value.code == "reserved_key"


def test_longest_ttl(client):
    client.write("forever", b"v", ttl=1e30)  # capped at the longest Go duration
    assert client.ttl("forever") > 100 * 365 * 86400
    client.batch_write({"forever2": b"v"}, ttl=1e30)
    assert client.ttl("forever2") > 100 * 365 * 86400
