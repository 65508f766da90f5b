import io
import os
import socket
import ssl
import subprocess
import threading

import pytest

from simdr import Client, NotFound, SimdrError, Unauthorized

KEYS = ["plain", "", "a/b/c", ".", "..", "%2F", "ünïcode ключ", b"\x00\x01\xff", "sp ace?&#", "x" * 300]


@pytest.fixture
def client(server):
    c = Client(server.url)
    yield c
    c.close()


def test_rust_method_names(client):
    assert client.is_empty() and len(client) == 0
    assert "k" not in client and not client.exists("k") and client.read("k") is None
    for i, k in enumerate(KEYS):
        client.write(k, b"value %d" % i)
    for i, k in enumerate(KEYS):
        assert client.read(k) == b"value %d" % i, k
        assert k in client and client.exists(k)
    assert len(client) == len(KEYS) and not client.is_empty()
    size = client.file_size()
    assert size > 0 and size == client.stats()["file_bytes"]
    client.delete("a/b/c")
    client.delete("never there")  # no error
    assert client.read("a/b/c") is None and "a/b/c" not in client
    assert len(client) == len(KEYS) - 1
    assert client.file_size() > size


def test_values_that_cannot_be_stored(client):
    for bad in (b"", b"\x00"):
        with pytest.raises(SimdrError) as e:
            client.write("k", bad)
        assert e.value.status == 400 and e.value.code == "invalid_value"
    client.write("k", b"\x00\x00")  # longer all-zero values are ordinary
    assert client.read("k") == b"\x00\x00"


def test_batch_write_and_read(client):
    assert client.batch_write({"a": b"1", "b": b"2"}) == 2
    assert client.batch_write([(b"c\x00", b"3"), ("d", bytearray(b"4"))]) == 2
    assert client.batch_read(["a", "missing", b"c\x00", "d", ""]) == [b"1", None, b"3", b"4", None]
    assert client.batch([("delete", "a"), ("put", "e", b"5")]) == 2
    assert client.batch_read(["a", "e"]) == [None, b"5"]
    assert client.batch_read([]) == []
    # one bad value: nothing of the batch is applied
    with pytest.raises(SimdrError) as e:
        client.batch_write([("x", b"1"), ("y", b"")])
    assert e.value.code == "invalid_value"
    assert client.read("x") is None
    with pytest.raises(ValueError):
        client.batch([("merge", "k", b"v")])


def test_range_and_streaming(client):
    big = os.urandom(3 << 20)
    client.write("big", big)
    assert client.read("big") == big
    assert client.read_range("big", 10, 20) == big[10:20]
    assert client.read_range("big", len(big) - 5) == big[-5:]
    assert client.read_range("nope", 0, 1) is None
    with pytest.raises(SimdrError) as e:
        client.read_range("big", len(big) + 10)
    assert e.value.status == 416 and e.value.code == "bad_range"
    with client.read_stream("big", chunk_size=1 << 18) as s:
        assert s.length == len(big)
        chunks = list(s)
    assert b"".join(chunks) == big and len(chunks) >= 12
    with client.read_stream("big", start=100, end=200) as s:
        assert s.status == 206 and s.read() == big[100:200]
    # a stream closed half read does not break the client
    s = client.read_stream("big")
    assert s.read(10) == big[:10]
    s.close()
    assert client.read("big") == big
    with pytest.raises(NotFound):
        client.read_stream("nope")


def test_streaming_write(client):
    data = os.urandom((2 << 20) + 17)
    client.write("streamed", io.BytesIO(data))  # no length: sent chunked
    assert client.read("streamed") == data
    client.write("mv", memoryview(data)[5:50])
    assert client.read("mv") == data[5:50]


def test_rename_stats_compact_sync(client):
    client.write("old", b"v1")
    client.write("old", b"v2")
    client.rename("old", b"new\xff")
    assert client.read("old") is None and client.read(b"new\xff") == b"v2"
    with pytest.raises(NotFound):
        client.rename("old", "other")
    st = client.stats()
    assert st["live_keys"] == 1 and st["entries"] >= 2
    c = client.compact()
    assert c["size_after"] < c["size_before"]
    client.sync()
    assert client.health()
    assert client.read(b"new\xff") == b"v2"


def test_concurrent_threads(client):
    errors = []

    def work(t):
        try:
            for i in range(30):
                k = f"t{t}-{i}"
                client.write(k, k.encode())
                assert client.read(k) == k.encode()
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    ts = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors and len(client) == 120


def test_server_restart_reconnects(simdr_bin, tmp_path):
    from conftest import Server
    s = Server(simdr_bin, str(tmp_path / "r.simdr"))
    c = Client(s.url)
    c.write("k", b"v")
    s.stop()
    with pytest.raises(OSError):
        c.read("k")
    c.close()


def test_token(token_server):
    url = token_server.url
    with pytest.raises(Unauthorized) as e:
        Client(url).write("k", b"v")
    assert e.value.status == 401 and e.value.code == "unauthorized"
    with pytest.raises(Unauthorized):
        Client(url, token="wrong").read("k")
    c = Client(url, token=token_server.token)
    c.write("k", b"v")
    assert c.read("k") == b"v" and len(c) == 1
    assert Client(url).health()  # /healthz needs no token
    c.close()


def test_bad_urls():
    for url in ("ftp://x", "http://", "http://h:1/path", "127.0.0.1:7070"):
        with pytest.raises(ValueError):
            Client(url)
    with pytest.raises(ValueError):
        Client("http://127.0.0.1:1", cafile="/nonexistent")


# TLS: simdr serve speaks plain HTTP (put a TLS-terminating proxy in front);
# here a small proxy with a certificate from a custom CA stands in for one.

def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture
def tls_proxy(server, tmp_path):
    if subprocess.run(["which", "openssl"], capture_output=True).returncode != 0:
        pytest.skip("openssl is needed to make test certificates")
    d = str(tmp_path)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
             "-days", "2", "-subj", "/CN=simdr test CA", cwd=d)
    with open(os.path.join(d, "ext.cnf"), "w") as f:
        f.write("subjectAltName=DNS:localhost\n")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "srv.key", "-out", "srv.csr",
             "-subj", "/CN=localhost", cwd=d)
    _openssl("x509", "-req", "-in", "srv.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "srv.pem", "-days", "2", "-extfile", "ext.cnf", cwd=d)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.path.join(d, "srv.pem"), os.path.join(d, "srv.key"))
    lsock = socket.create_server(("127.0.0.1", 0))
    port = lsock.getsockname()[1]
    host, _, up_port = server.url[len("http://"):].rpartition(":")
    stop = threading.Event()

    def pipe(a, b):
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.close()
                except OSError:
                    pass

    def serve():
        lsock.settimeout(0.2)
        while not stop.is_set():
            try:
                raw, _ = lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                raw.settimeout(10)
                tls = ctx.wrap_socket(raw, server_side=True)
                tls.settimeout(None)
            except (ssl.SSLError, OSError):
                raw.close()
                continue
            up = socket.create_connection((host, int(up_port)))
            threading.Thread(target=pipe, args=(tls, up), daemon=True).start()
            threading.Thread(target=pipe, args=(up, tls), daemon=True).start()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield f"https://localhost:{port}", os.path.join(d, "ca.pem")
    stop.set()
    lsock.close()
    t.join(5)


def test_tls_custom_ca(tls_proxy):
    url, ca = tls_proxy
    c = Client(url, cafile=ca)
    c.write("tls", b"over TLS")
    assert c.read("tls") == b"over TLS" and len(c) == 1
    c.close()
    ctx = ssl.create_default_context(cafile=ca)
    c = Client(url, ssl_context=ctx)
    assert c.read_range("tls", 5) == b"TLS"
    c.close()
    # without the custom CA the certificate is refused
    with pytest.raises(ssl.SSLCertVerificationError):
        Client(url).read("tls")
    # and the host name is checked: the certificate names localhost only
    with pytest.raises(ssl.SSLCertVerificationError):
        Client(url.replace("localhost", "127.0.0.1"), cafile=ca).read("tls")
