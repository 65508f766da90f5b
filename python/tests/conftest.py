"""Fixtures: the simdr CLI built from this repo, and real `simdr serve`
processes on 127.0.0.1:0."""

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
PYDIR = os.path.dirname(HERE)
REPO = os.path.dirname(PYDIR)
VECTORS = os.path.join(REPO, "testdata", "vectors")
sys.path.insert(0, PYDIR)


def _go():
    go = shutil.which("go") or ("/usr/local/go/bin/go" if os.path.exists("/usr/local/go/bin/go") else None)
    if go is None:
        pytest.fail("the go tool is needed to build cmd/simdr for these tests")
    return go


def _go_build(tmp_path_factory, pkg):
    """go build pkg into a temporary directory; returns the binary."""
    out = str(tmp_path_factory.mktemp("bin") / os.path.basename(pkg))
    env = dict(os.environ)
    env["GOFLAGS"] = (env.get("GOFLAGS", "") + " -mod=readonly").strip()
    subprocess.run([_go(), "build", "-o", out, pkg], cwd=REPO, check=True, env=env, timeout=300)
    return out


@pytest.fixture(scope="session")
def simdr_bin(tmp_path_factory):
    """go build ./cmd/simdr into a temporary directory."""
    return _go_build(tmp_path_factory, "./cmd/simdr")


@pytest.fixture(scope="session")
def goview_bin(tmp_path_factory):
    """go build ./python/tests/goview: what the Go engine reads at a given time."""
    return _go_build(tmp_path_factory, "./python/tests/goview")


def run_simdr(simdr_bin, *args, input=None):
    """Run the CLI; returns stdout (bytes). Fails the test on a non-zero exit."""
    p = subprocess.run([simdr_bin, *args], input=input, capture_output=True, timeout=60)
    if p.returncode != 0:
        raise AssertionError(f"simdr {' '.join(args)}: exit {p.returncode}: {p.stderr.decode(errors='replace')}")
    return p.stdout


class Server:
    def __init__(self, simdr_bin, path, extra=()):
        self.path = path
        self.proc = subprocess.Popen([simdr_bin, path, "serve", "--addr", "127.0.0.1:0", *extra],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        # serve prints "simdr: serving FILE on http://ADDR (Ctrl-C to stop)"
        # on stderr once it listens; older builds printed it before, so the
        # connection is retried below either way.
        line = self.proc.stderr.readline().decode(errors="replace")
        m = re.search(r"on (http://\S+)", line)
        if not m:
            self.stop()
            raise AssertionError(f"simdr serve printed {line!r}")
        self.url = m.group(1)
        if self.url.endswith(":0"):
            self.stop()
            raise AssertionError(f"simdr serve did not print the bound port: {line!r}")
        deadline = time.monotonic() + 15
        while True:
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise AssertionError(f"simdr serve at {self.url} did not come up")
                time.sleep(0.05)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stderr.close()


@pytest.fixture
def server(simdr_bin, tmp_path):
    s = Server(simdr_bin, str(tmp_path / "served.simdr"))
    yield s
    s.stop()
    assert s.proc.returncode == 0, "simdr serve did not stop cleanly on SIGTERM"


@pytest.fixture
def token_server(simdr_bin, tmp_path):
    tok = tmp_path / "token"
    tok.write_text("s3cret-token\n")
    s = Server(simdr_bin, str(tmp_path / "tok.simdr"), ["--token-file", str(tok)])
    s.token = "s3cret-token"
    yield s
    s.stop()
