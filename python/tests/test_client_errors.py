"""The client against a stand-in server: generic JSON errors, headers sent."""

import http.server
import json
import threading

import pytest

from simdr import Client, NotFound, OutcomeUnknown, SimdrError, Unauthorized


class _Handler(http.server.BaseHTTPRequestHandler):
    seen = []
    answer = (200, "application/json", b"{}")

    def _any(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        type(self).seen.append((self.command, self.path, dict(self.headers), body))
        status, ctype, out = type(self).answer
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(out)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _any

    def log_message(self, *a):
        pass


@pytest.fixture
def fake():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    _Handler.seen = []
    yield srv, f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


@pytest.mark.parametrize("status,ctype,body,cls,code", [
    (507, "application/json", b'{"error":"no space left on device","code":"no_space"}', SimdrError, "no_space"),
    (403, "application/json", b'{"error":"cross-origin request refused","code":"forbidden"}', SimdrError, "forbidden"),
    (401, "application/json", b'{"error":"bad token","code":"unauthorized"}', Unauthorized, "unauthorized"),
    (502, "text/html", b"<html>bad gateway</html>", SimdrError, ""),
    (500, "application/json", b'["not", "an", "object"]', SimdrError, ""),
    (404, "application/json", b'{"error":"no such endpoint","code":"no_route"}', SimdrError, "no_route"),
])
def test_generic_errors(fake, status, ctype, body, cls, code):
    _, url = fake
    _Handler.answer = (status, ctype, body)
    c = Client(url)
    with pytest.raises(cls) as e:
        c.write("k", b"v")
    assert e.value.status == status and e.value.code == code
    assert str(status) in str(e.value) and e.value.message
    assert not isinstance(e.value, NotFound) or code == ""


def test_headers_sent(fake):
    srv, url = fake
    port = srv.server_address[1]
    _Handler.answer = (204, "application/json", b"")
    c = Client(url, token="tok")
    c.rename("a", "b")
    c.write(b"k/\x00", b"v")
    for method, path, headers, body in _Handler.seen:
        assert headers["Host"] == f"127.0.0.1:{port}"
        assert "Origin" not in headers
        assert headers["Authorization"] == "Bearer tok"
    (m1, p1, h1, b1), (m2, p2, h2, b2) = _Handler.seen
    assert (m1, p1) == ("POST", "/v1/rename")
    assert h1["Content-Type"] == "application/json"
    assert json.loads(b1) == {"from_b64": "YQ==", "to_b64": "Yg=="}
    assert (m2, p2, b2) == ("PUT", "/v1/keys/k%2F%00", b"v")


class _ClosingHandler(_Handler):
    """Answers keep-alive (HTTP/1.1, no Connection: close) and then drops the
    connection, as a server whose idle timeout fired does."""
    protocol_version = "HTTP/1.1"
    conns = set()

    def _any(self):
        type(self).conns.add(self.client_address)
        super()._any()
        self.close_connection = True

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _any


def test_reconnects_after_server_closed_idle_connection():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ClosingHandler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        _ClosingHandler.answer = (200, "application/json", b'{"len": 3, "size": 99}')
        c = Client(f"http://127.0.0.1:{srv.server_address[1]}")
        assert len(c) == 3
        assert c._pool, "the keep-alive connection is pooled"
        import time
        time.sleep(0.1)  # the server has closed it by now
        assert c.file_size() == 99  # sent again on a new connection
        assert len(_ClosingHandler.conns) == 2
        c.close()
    finally:
        srv.shutdown()
        srv.server_close()


class _TakesThenDropsHandler(_Handler):
    """Keep-alive (HTTP/1.1): answers the first request of a connection; of
    the second, reads it whole, records it, and drops the connection without
    answering, as a server that applied a write and died before its answer
    (or whose connection broke then) does."""
    protocol_version = "HTTP/1.1"

    def _any(self):
        if getattr(self, "_answered", False):
            n = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(n) if n else b""
            type(self).seen.append((self.command, self.path, dict(self.headers), body))
            self.close_connection = True
            self.connection.shutdown(2)  # no answer
            return
        self._answered = True
        super()._any()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _any


_WRITES = [
    ("write", lambda c: c.write("k", b"v")),
    ("delete", lambda c: c.delete("k")),
    ("batch", lambda c: c.batch([("put", "k", b"v")])),
    ("rename", lambda c: c.rename("a", "b")),
]


@pytest.mark.parametrize("name,call", _WRITES)
def test_write_whose_answer_was_lost_is_not_sent_again(name, call):
    """A write sent whole on a reused connection that then broke may have
    been applied: it is not sent again (applied twice, around another
    client's write to the key, it would undo that write); the client raises
    OutcomeUnknown. A read in the same case is sent again."""
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _TakesThenDropsHandler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        _TakesThenDropsHandler.seen = []
        _TakesThenDropsHandler.answer = (200, "application/json", b'{"len": 3, "size": 99, "ops": 1}')
        c = Client(f"http://127.0.0.1:{srv.server_address[1]}")
        assert len(c) == 3 and c._pool, "a keep-alive connection is pooled"
        with pytest.raises(OutcomeUnknown):
            call(c)
        assert len(_TakesThenDropsHandler.seen) == 2, "the write was sent again"
        # A read is sent again, on a new connection.
        assert c.file_size() == 99
        c.close()
    finally:
        srv.shutdown()
        srv.server_close()


class _TakesNeverAnswersHandler(_Handler):
    """Reads each request whole and never answers it."""
    protocol_version = "HTTP/1.1"
    release = None

    def _any(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        type(self).seen.append((self.command, self.path, dict(self.headers), body))
        type(self).release.wait()
        self.close_connection = True

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _any


@pytest.mark.parametrize("name,call", _WRITES)
def test_write_whose_answer_timed_out_is_outcome_unknown(name, call):
    """A write sent whole whose answer did not come within the client's
    timeout may have been applied as much as one whose connection broke:
    OutcomeUnknown (its cause the TimeoutError), not a bare TimeoutError
    that a caller handling OutcomeUnknown misses; it is not sent again."""
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _TakesNeverAnswersHandler)
    _TakesNeverAnswersHandler.seen = []
    _TakesNeverAnswersHandler.release = threading.Event()
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        c = Client(f"http://127.0.0.1:{srv.server_address[1]}", timeout=0.3)
        with pytest.raises(OutcomeUnknown) as e:
            call(c)
        assert isinstance(e.value.__cause__, TimeoutError)
        assert len(_TakesNeverAnswersHandler.seen) == 1, "the write was sent again"
        c.close()
    finally:
        _TakesNeverAnswersHandler.release.set()
        srv.shutdown()
        srv.server_close()
