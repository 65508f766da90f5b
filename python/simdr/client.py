"""A client for `simdr FILE serve` (docs/server.md), standard library only.

Method names follow the Rust original's Python package: write, batch_write,
read, batch_read, delete, exists, `in`, len(), is_empty, file_size; plus
read_range, read_stream (streaming and Range), batch (puts and deletes),
ttl (expiring keys: write and batch take a ttl), rename, stats, compact,
sync and health.
"""

import base64
import datetime
import http.client
import json
import math
import select
import ssl
import struct
import threading
import urllib.parse

__all__ = ["Client", "SimdrError", "NotFound", "Unauthorized", "OutcomeUnknown"]

_BINARY = "application/x-simdr"


class SimdrError(Exception):
    """An error answered by the server: status (HTTP), code (the server's
    machine code, for example "invalid_value", "too_large", "bad_request",
    or "" when the body was not the JSON error object) and message."""

    def __init__(self, status, code, message):
        super().__init__(f"simdr: {status} {code}: {message}" if code else f"simdr: {status}: {message}")
        self.status = status
        self.code = code
        self.message = message


class NotFound(SimdrError, KeyError):
    """The key has no value (404 not_found), where a method cannot say None."""

    def __str__(self):
        return Exception.__str__(self)


class Unauthorized(SimdrError):
    """A missing or wrong bearer token (401)."""


class OutcomeUnknown(ConnectionError):
    """A write (write, batch_write, batch, delete, rename) was sent whole and
    no answer came (the connection broke, the client's timeout passed, the
    answer was garbled or TLS failed): the server may or may not have
    applied it. The client does not send it again: applied twice, with
    another client's write to the key between the two, it would undo that
    write. Read the key to find out, or send it again if no other client
    writes it. The error met (ConnectionError, TimeoutError, ...) is its
    __cause__. (A cluster node's 503
    outcome_unknown answer is a SimdrError with that code.)"""


def _changes_data(method, path):
    """Whether a request may change what the store holds."""
    if method in ("PUT", "DELETE"):
        return True
    return method == "POST" and path.split("?", 1)[0] in ("/v1/batch", "/v1/rename")


def _dropped(conn):
    """Whether an idle pooled connection was closed by the server (it is
    readable: end of file), so that no request is sent on it."""
    if conn.sock is None:
        return False
    try:
        readable, _, _ = select.select([conn.sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


def _key_bytes(key):
    if isinstance(key, str):
        return key.encode("utf-8")
    if isinstance(key, (bytes, bytearray, memoryview)):
        return bytes(key)
    raise TypeError(f"key must be str or bytes, not {type(key).__name__}")


def _ttl_ms(ttl):
    """A ttl (seconds, int or float, or a datetime.timedelta) in whole
    milliseconds, rounded up as the server rounds it; it must be positive."""
    if isinstance(ttl, datetime.timedelta):
        ttl = ttl.total_seconds()
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)):
        raise TypeError(f"simdr: ttl must be seconds (int or float) or a timedelta, not {type(ttl).__name__}")
    if not ttl > 0 or math.isinf(ttl):  # also NaN
        raise ValueError(f"simdr: ttl must be positive and finite, not {ttl!r}")
    ms = math.ceil(ttl * 1000)
    return min(ms, ((1 << 63) - 1) // 10**6)  # the longest Go duration


def _key_path(key):
    k = _key_bytes(key)
    if k in (b".", b".."):
        seg = "%2E" * len(k)  # clients and proxies resolve bare dot segments
    else:
        seg = urllib.parse.quote(k, safe="")
    return "/v1/keys/" + seg


class _Stream:
    """A streaming response body: read(n), iteration in chunks, close().
    Use it as a context manager; the connection is reusable once the body
    is read to its end or closed."""

    def __init__(self, client, conn, resp, chunk_size):
        self._client, self._conn, self._resp = client, conn, resp
        self.chunk_size = chunk_size
        self.status = resp.status
        self.headers = resp.headers
        length = resp.getheader("Content-Length")
        self.length = int(length) if length is not None else None

    def read(self, n=-1):
        if self._resp is None:
            return b""
        try:
            return self._resp.read() if n is None or n < 0 else self._resp.read(n)
        except BaseException:
            self._abort()
            raise

    def readinto(self, b):
        if self._resp is None:
            return 0
        return self._resp.readinto(b)

    def __iter__(self):
        while True:
            chunk = self.read(self.chunk_size)
            if not chunk:
                self.close()
                return
            yield chunk

    def _abort(self):
        if self._resp is not None:
            self._resp.close()
            self._resp = None
            self._conn.close()
            self._client._release(self._conn, reuse=False)

    def close(self):
        if self._resp is None:
            return
        done = self._resp.isclosed()
        self._resp.close()
        self._resp = None
        if not done:
            self._conn.close()  # unread body: the connection cannot be reused
        self._client._release(self._conn, reuse=done)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Client:
    """A client for one `simdr serve` URL.

    Client("http://127.0.0.1:7070", token=None, timeout=30.0,
           ssl_context=None, cafile=None)

    token: sent as `Authorization: Bearer <token>` (the server's
    --token-file). For an https:// URL (a TLS-terminating proxy in front of
    the server), ssl_context is used as given; otherwise cafile (a PEM file
    of a custom CA) is loaded into a default context that verifies the
    certificate and host name. Keys are str (sent as UTF-8) or bytes; values
    are bytes-like. The client keeps a small pool of keep-alive connections
    and is safe to share between threads.
    """

    def __init__(self, url="http://127.0.0.1:7070", token=None, timeout=30.0,
                 ssl_context=None, cafile=None):
        u = urllib.parse.urlsplit(url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError(f"simdr: bad server URL {url!r} (want http://HOST:PORT or https://...)")
        if u.path not in ("", "/") or u.query or u.fragment:
            raise ValueError(f"simdr: server URL {url!r} must have no path, query or fragment")
        self.url = url.rstrip("/")
        self._https = u.scheme == "https"
        self._host = u.hostname
        self._port = u.port or (443 if self._https else 80)
        self.timeout = timeout
        if self._https:
            if ssl_context is None:
                ssl_context = ssl.create_default_context(cafile=cafile)
            self._ssl = ssl_context
        elif ssl_context is not None or cafile is not None:
            raise ValueError("simdr: ssl_context and cafile need an https:// URL")
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._pool = []
        self._lock = threading.Lock()

    # connections

    def _conn(self):
        with self._lock:
            while self._pool:
                conn = self._pool.pop()
                if not _dropped(conn):
                    return conn
                conn.close()
        if self._https:
            return http.client.HTTPSConnection(self._host, self._port, timeout=self.timeout, context=self._ssl)
        return http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)

    def _release(self, conn, reuse=True):
        if not reuse:
            conn.close()
            return
        with self._lock:
            if len(self._pool) < 8:
                self._pool.append(conn)
                return
        conn.close()

    def close(self):
        """Close the pooled connections."""
        with self._lock:
            pool, self._pool = self._pool, []
        for c in pool:
            c.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _send(self, method, path, body=None, headers=None):
        """Send a request and return (conn, response) with the body unread.
        A request on a reused connection that the server had closed is sent
        once more on a new one (only when the body can be sent again), unless
        it is a write sent whole: that one may have been applied
        (OutcomeUnknown). A pooled connection the server closed while idle is
        not used."""
        h = dict(self._headers)
        if headers:
            h.update(headers)
        replayable = body is None or isinstance(body, (bytes, bytearray, memoryview))
        once = _changes_data(method, path)
        for attempt in (0, 1):
            conn = self._conn()
            reused = conn.sock is not None
            sent = False
            try:
                conn.request(method, path, body=body, headers=h)
                sent = True
                return conn, conn.getresponse()
            except (OSError, http.client.HTTPException) as e:
                # A write sent whole whose answer did not come (the
                # connection broke, the answer timed out or was garbled, a
                # TLS error) may be applied, whatever the error.
                conn.close()
                if once and sent:
                    raise OutcomeUnknown(f"simdr: {method} {path}: no answer after the request was sent "
                                         f"({e.__class__.__name__}), it may or may not be applied: {e}") from e
                if (attempt == 0 and reused and replayable and
                        isinstance(e, (ConnectionError, http.client.RemoteDisconnected, http.client.BadStatusLine))):
                    continue
                raise
            except BaseException:
                conn.close()
                raise

    def _do(self, method, path, body=None, headers=None, ok=(200, 204)):
        """A request whose whole answer is read: returns (status, headers, body)."""
        conn, resp = self._send(method, path, body, headers)
        try:
            data = resp.read()
        except BaseException:
            conn.close()
            raise
        reuse = not resp.will_close
        self._release(conn, reuse)
        if resp.status not in ok:
            raise self._error(resp, data)
        return resp.status, resp.headers, data

    def _json(self, method, path, obj=None, ok=(200, 204)):
        body = None
        headers = None
        if obj is not None:
            body = json.dumps(obj).encode("utf-8")
            headers = {"Content-Type": "application/json"}
        _, _, data = self._do(method, path, body, headers, ok)
        return json.loads(data) if data else None

    @staticmethod
    def _error(resp, data):
        code, message = "", ""
        try:
            obj = json.loads(data)
            if isinstance(obj, dict):
                code = str(obj.get("code", ""))
                message = str(obj.get("error", ""))
        except (ValueError, UnicodeDecodeError):
            pass
        if not message:
            message = data[:500].decode("utf-8", "replace") or resp.reason
        cls = SimdrError
        if resp.status == 401:
            cls = Unauthorized
        elif resp.status == 404 and code in ("not_found", ""):
            cls = NotFound
        return cls(resp.status, code, message)

    # the Rust original's methods

    def write(self, key, value, ttl=None):
        """Store value (bytes-like, or a binary file object, streamed) under
        key. An empty value or the single byte 0x00 cannot be stored:
        SimdrError with code "invalid_value".

        ttl (seconds, int or float, or a datetime.timedelta) makes the value
        expire that long after the server stores it, by the server's clock,
        in whole milliseconds rounded up: it then reads as absent. None, the
        default, stores a value that never expires (replacing any expiry
        the key had). A ttl that is not positive raises ValueError."""
        path = _key_path(key)
        if ttl is not None:
            path += f"?ttl={_ttl_ms(ttl)}ms"
        headers = {"Content-Type": "application/octet-stream"}
        if isinstance(value, (bytes, bytearray, memoryview)):
            headers["Content-Length"] = str(memoryview(value).nbytes)
        self._do("PUT", path, value, headers)

    def batch_write(self, items, ttl=None):
        """Store every (key, value) pair of items (an iterable of pairs, or a
        dict) in one atomic batch: all or nothing. Returns the number of
        operations applied. ttl, as in write, applies to every pair; an
        item may also be a (key, value, ttl) triple, with its own ttl (None:
        no expiry)."""
        if isinstance(items, dict):
            items = items.items()
        return self.batch(("put", it[0], it[1], it[2] if len(it) > 2 else ttl) for it in items)

    def ttl(self, key):
        """How long key's value has left before it expires, in seconds
        (whole milliseconds), or None when it has no expiry (a HEAD request:
        the server's X-Simdr-Expires-In-Ms header). Raises NotFound when the
        key has no value or it has expired."""
        _, headers, _ = self._do("HEAD", _key_path(key))
        v = headers.get("X-Simdr-Expires-In-Ms")
        if v is None:
            return None
        try:
            ms = int(v)
        except ValueError:
            ms = 0
        if ms <= 0:
            raise SimdrError(200, "bad_response", f"X-Simdr-Expires-In-Ms {v!r}")
        return ms / 1000

    def batch(self, ops):
        """Apply ops atomically, in order: each ("put", key, value),
        ("put", key, value, ttl) (ttl as in write; None: no expiry) or
        ("delete", key). Returns the number of operations applied. Sent in
        the binary batch format."""
        parts = []
        for op in ops:
            kind, k = op[0], _key_bytes(op[1])
            if kind == "put":
                v = bytes(op[2])
                ttl = op[3] if len(op) > 3 else None
                if ttl is None:
                    parts += [b"P", struct.pack("<I", len(k)), k, struct.pack("<Q", len(v)), v]
                else:
                    parts += [b"T", struct.pack("<I", len(k)), k, struct.pack("<Q", len(v)), v,
                              struct.pack("<Q", _ttl_ms(ttl))]
            elif kind == "delete":
                parts += [b"D", struct.pack("<I", len(k)), k]
            else:
                raise ValueError(f"simdr: unknown batch op {kind!r} (want 'put' or 'delete')")
        body = b"".join(parts)
        _, _, data = self._do("POST", "/v1/batch", body, {"Content-Type": _BINARY})
        return json.loads(data)["ops"]

    def read(self, key):
        """The value of key as bytes, or None when it has none."""
        try:
            return self._do("GET", _key_path(key))[2]
        except NotFound:
            return None

    def batch_read(self, keys):
        """The values of keys (a list of bytes, None for a missing key), in
        order, from one consistent snapshot."""
        keys = [_key_bytes(k) for k in keys]
        body = b"".join(struct.pack("<I", len(k)) + k for k in keys)
        _, _, data = self._do("POST", "/v1/get-many", body, {"Content-Type": _BINARY})
        out, pos = [], 0
        for _ in keys:
            if pos >= len(data):
                raise SimdrError(200, "bad_response", "get-many answer is short")
            flag = data[pos]
            pos += 1
            if flag == 0:
                out.append(None)
                continue
            if flag != 1 or pos + 8 > len(data):
                raise SimdrError(200, "bad_response", "get-many answer is malformed")
            (n,) = struct.unpack_from("<Q", data, pos)
            pos += 8
            if pos + n > len(data):
                raise SimdrError(200, "bad_response", "get-many answer is short")
            out.append(data[pos:pos + n])
            pos += n
        return out

    def delete(self, key):
        """Delete key (no error when it had no value)."""
        self._do("DELETE", _key_path(key))

    def exists(self, key):
        """Whether key has a value (a HEAD request)."""
        try:
            self._do("HEAD", _key_path(key))
            return True
        except NotFound:
            return False

    __contains__ = exists

    def __len__(self):
        """The number of live keys."""
        return self._json("GET", "/v1/len")["len"]

    def is_empty(self):
        return len(self) == 0

    def file_size(self):
        """The store file's size in bytes."""
        return self._json("GET", "/v1/len")["size"]

    # streaming and ranges

    def read_range(self, key, start, end=None):
        """Bytes start..end (end exclusive; None: to the end of the value) of
        key's value, through an HTTP Range request. None when the key has no
        value; SimdrError code "bad_range" (416) when start is past it."""
        if start < 0 or (end is not None and end <= start):
            raise ValueError("simdr: read_range wants 0 <= start < end")
        rng = f"bytes={start}-" if end is None else f"bytes={start}-{end - 1}"
        try:
            return self._do("GET", _key_path(key), headers={"Range": rng}, ok=(200, 206))[2]
        except NotFound:
            return None

    def read_stream(self, key, start=None, end=None, chunk_size=1 << 16):
        """Open key's value (or bytes start..end of it) as a stream: an object
        with read(n), readinto, iteration in chunk_size pieces, length (the
        Content-Length) and close(); use it in a with block. Raises NotFound
        when the key has no value."""
        headers = {}
        if start is not None or end is not None:
            s = start or 0
            headers["Range"] = f"bytes={s}-" if end is None else f"bytes={s}-{end - 1}"
        conn, resp = self._send("GET", _key_path(key), headers=headers)
        if resp.status not in (200, 206):
            try:
                data = resp.read()
            finally:
                self._release(conn, reuse=not resp.will_close)
            raise self._error(resp, data)
        return _Stream(self, conn, resp, chunk_size)

    # the rest of the API

    def rename(self, old, new):
        """Move old's value to new (NotFound when old has none)."""
        self._json("POST", "/v1/rename", {"from_b64": base64.b64encode(_key_bytes(old)).decode(),
                                          "to_b64": base64.b64encode(_key_bytes(new)).decode()})

    def stats(self):
        """The server's Store.Stats, as a dict."""
        return self._json("GET", "/v1/stats")

    def compact(self):
        """Compact the store; returns {"size_before": N, "size_after": M}."""
        return self._json("POST", "/v1/compact")

    def sync(self):
        """Return once every write so far is on disk."""
        self._do("POST", "/v1/sync")

    def health(self):
        """True when the server answers /healthz with 200."""
        try:
            self._do("GET", "/healthz")
            return True
        except SimdrError:
            return False
