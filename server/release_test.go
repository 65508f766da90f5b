package server_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/simdr-go/simdr"
	"github.com/simdr-go/simdr/server"
)

// relHeldDeleted returns how many files under dir this process holds open
// although they were unlinked, and their allocated bytes.
func relHeldDeleted(t *testing.T, dir string) (n int, bytes int64) {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd:", err)
	}
	dir, _ = filepath.EvalSymlinks(dir)
	for _, fd := range fds {
		p := filepath.Join("/proc/self/fd", fd.Name())
		to, err := os.Readlink(p)
		if err != nil || !strings.HasPrefix(to, dir+"/") || !strings.HasSuffix(to, " (deleted)") {
			continue
		}
		var st syscall.Stat_t
		if syscall.Stat(p, &st) == nil {
			n++
			bytes += st.Blocks * 512
		}
	}
	return n, bytes
}

func relDo(t *testing.T, method, url string, body []byte) []byte {
	t.Helper()
	req, _ := http.NewRequest(method, url, bytes.NewReader(body))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Error(err)
		return nil
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode >= 300 {
		t.Errorf("%s %s: %d %s", method, url, res.StatusCode, b)
	}
	return b
}

// TestCompactReleasesDiskSpace: after POST /v1/compact, the server gives
// back the replaced file's disk space, once the requests that may still read
// from it have finished: a GET streaming a value from the old file keeps it
// (and reads it whole), later requests do not.
func TestCompactReleasesDiskSpace(t *testing.T) {
	dir := t.TempDir()
	st, err := simdr.Open(filepath.Join(dir, "s.simdr"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	srv := httptest.NewServer(server.Handler(st, server.Config{}))
	defer srv.Close()
	keys := srv.URL + "/v1/keys/"

	// Five compactions, each of 1 MB of overwritten values: nothing stays held.
	val := bytes.Repeat([]byte("v"), 1000)
	for round := 0; round < 5; round++ {
		for i := 0; i < 1000; i++ {
			if err := st.Put([]byte(fmt.Sprint("k", i)), append([]byte(fmt.Sprint(round)), val...)); err != nil {
				t.Fatal(err)
			}
		}
		relDo(t, "POST", srv.URL+"/v1/compact", nil)
		if n, held := relHeldDeleted(t, dir); n != 0 || held != 0 {
			t.Fatalf("after compaction %d: %d replaced files held, %d bytes", round+1, n, held)
		}
	}

	// A slow reader of a large value from the old file.
	// The reader's small receive buffer (no autotuning) and the server's
	// send buffer (4 MiB at most) hold far less than the value: the handler
	// is still writing it until the reader reads on.
	big := bytes.Repeat([]byte("0123456789abcdef"), 16<<20/16)
	if err := st.Put([]byte("big"), big); err != nil {
		t.Fatal(err)
	}
	slow := &http.Client{Transport: &http.Transport{DialContext: (&net.Dialer{
		Control: func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 64<<10)
			})
			return errors.Join(err, serr)
		},
	}).DialContext}}
	res, err := slow.Get(keys + "big")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	first := make([]byte, 1)
	if _, err := io.ReadFull(res.Body, first); err != nil {
		t.Fatal(err)
	}
	g0 := st.Generation()
	done := make(chan []byte, 2)
	for range 2 { // two at once: neither waits for the other
		go func() { done <- relDo(t, "POST", srv.URL+"/v1/compact", nil) }()
	}
	for st.Generation() < g0+2 {
		runtime.Gosched()
	}
	if n, _ := relHeldDeleted(t, dir); n != 2 {
		t.Fatalf("while a GET of the old file is in flight: %d replaced files held, want 2", n)
	}
	rest, err := io.ReadAll(res.Body)
	if err != nil || !bytes.Equal(append(first, rest...), big) {
		t.Fatalf("the GET streamed across compactions read %d bytes (%v), not the value", 1+len(rest), err)
	}
	res.Body.Close()
	<-done
	<-done
	if n, held := relHeldDeleted(t, dir); n != 0 || held != 0 {
		t.Fatalf("after the GET finished: %d replaced files held, %d bytes", n, held)
	}
	if got := relDo(t, "GET", keys+"big", nil); !bytes.Equal(got, big) {
		t.Fatal("big lost")
	}
}

// TestStreamReaderThatNeverReads: a client that opens GET /v1/entries or
// /v1/backup and never reads is cut once a write of the stream has made no
// progress for WriteTimeout. Those streams had no write deadline at all: the
// handler stayed blocked in Write for good, and with it POST /v1/compact,
// which waits for the requests that may read the file it replaced, and the
// disk space of that file.
func TestStreamReaderThatNeverReads(t *testing.T) {
	st, dir := openStoreDir(t) // closed after the server's cleanup
	base, _ := start(t, st, server.Config{WriteTimeout: 500 * time.Millisecond})
	val := bytes.Repeat([]byte("0123456789abcdef"), 1<<20/16)
	for i := range 32 { // 32 MiB: far more than the socket buffers hold
		if err := st.Put([]byte(fmt.Sprint("k", i)), val); err != nil {
			t.Fatal(err)
		}
	}
	for _, path := range []string{"/v1/entries", "/v1/backup"} {
		t.Run(path, func(t *testing.T) {
			conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.(*net.TCPConn).SetReadBuffer(64 << 10)
			fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", path) // and never read
			waitInFlight(t, base, 1)
			for i := range 32 { // something to compact
				st.Put([]byte(fmt.Sprint("k", i)), val[1:])
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, "POST", base+"/v1/compact", nil)
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatalf("POST /v1/compact while a client does not read %s: %v", path, err)
			}
			res.Body.Close()
			if n, held := relHeldDeleted(t, dir); n != 0 {
				t.Fatalf("after the compaction: %d replaced files held (%d bytes)", n, held)
			}
			waitInFlight(t, base, 0)
		})
	}
}
