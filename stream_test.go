package simdr

import (
	"bytes"
	"errors"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// failingReader yields n bytes of pattern, then fails with err.
type failingReader struct {
	n   int
	err error
}

func (r *failingReader) Read(p []byte) (int, error) {
	if r.n == 0 {
		return 0, r.err
	}
	k := min(len(p), r.n)
	for i := range p[:k] {
		p[i] = byte(i%251) + 1
	}
	r.n -= k
	return k, nil
}

func TestPutReader(t *testing.T) {
	s, path := openT(t, nil)
	for _, size := range []int{1, 63, 64, 65, streamChunk - 1, streamChunk, streamChunk + 1, 3*streamChunk + 17} {
		v := make([]byte, size)
		for i := range v {
			v[i] = byte(rand.Uint32())
		}
		v[0] = 1 // never the single zero byte
		// iotest-style one-byte-at-a-time reads for small values.
		var r io.Reader = bytes.NewReader(v)
		if size < 100 {
			r = oneByteReader{r}
		}
		n, err := s.PutReader([]byte("v"), r)
		if err != nil || n != int64(size) {
			t.Fatalf("PutReader(%d) = %d, %v", size, n, err)
		}
		e, err := s.Get([]byte("v"))
		if err != nil || !bytes.Equal(e.Bytes(), v) {
			t.Fatalf("size %d: value differs", size)
		}
		if e.Checksum() != crc32.ChecksumIEEE(v) || e.Verify() != nil {
			t.Fatalf("size %d: checksum", size)
		}
	}
	s.Close()
	s = reopenT(t, path, nil)
	if e, err := s.Get([]byte("v")); err != nil || e.Len() != 3*streamChunk+17 {
		t.Fatalf("after reopen: %v %d", err, e.Len())
	}
}

type oneByteReader struct{ r io.Reader }

func (o oneByteReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	return o.r.Read(p[:1])
}

// TestPutReaderFailure: a reader that fails midway leaves the store exactly as
// before, and the next Put is unharmed, also after a reopen.
func TestPutReaderFailure(t *testing.T) {
	boom := errors.New("boom")
	for _, n := range []int{0, 1, 1000, streamChunk, streamChunk + 5, 3 * streamChunk} {
		s, path := openT(t, nil)
		putT(t, s, "before", "kept")
		putT(t, s, "k", "old value")
		size := s.Size()
		got, err := s.PutReader([]byte("k"), &failingReader{n: n, err: boom})
		if !errors.Is(err, boom) || got != 0 {
			t.Fatalf("n=%d: PutReader = %d, %v; want boom", n, got, err)
		}
		if s.Size() != size {
			t.Fatalf("n=%d: size %d, want %d", n, s.Size(), size)
		}
		if fi, _ := os.Stat(path); fi.Size() != size {
			t.Fatalf("n=%d: file is %d bytes, want %d", n, fi.Size(), size)
		}
		model := map[string]string{"before": "kept", "k": "old value"}
		checkModel(t, s, model)
		putT(t, s, "after", "next put")
		model["after"] = "next put"
		checkModel(t, s, model)
		if err := s.Verify(); err != nil {
			t.Fatal(err)
		}
		s.Close()
		s = reopenT(t, path, nil)
		checkModel(t, s, model)
		if err := s.Verify(); err != nil {
			t.Fatal(err)
		}
	}
}

// blockingReader yields its bytes once release is closed.
type blockingReader struct {
	started chan struct{}
	release chan struct{}
	once    sync.Once
	left    int
}

func (r *blockingReader) Read(p []byte) (int, error) {
	r.once.Do(func() { close(r.started) })
	<-r.release
	if r.left == 0 {
		return 0, io.EOF
	}
	k := min(len(p), r.left)
	for i := range p[:k] {
		p[i] = 'z'
	}
	r.left -= k
	return k, nil
}

// TestPutReaderDoesNotBlockGets: while a slow reader streams, Get, GetMany,
// Has, Len and Entries answer from the state before it.
func TestPutReaderDoesNotBlockGets(t *testing.T) {
	s, _ := openT(t, nil)
	putT(t, s, "k", "v")
	r := &blockingReader{started: make(chan struct{}), release: make(chan struct{}), left: 10}
	done := make(chan error)
	go func() { _, err := s.PutReader([]byte("slow"), r); done <- err }()
	<-r.started
	gets := make(chan struct{})
	go func() {
		defer close(gets)
		if getT(t, s, "k") != "v" || s.Has([]byte("slow")) || s.Len() != 1 {
			t.Error("reads during PutReader")
		}
		if es, err := s.GetMany([][]byte{[]byte("k"), []byte("slow")}); err != nil || !es[0].Exists() || es[1].Exists() {
			t.Errorf("GetMany during PutReader: %v", err)
		}
		for range s.Entries() {
		}
	}()
	select {
	case <-gets:
	case <-time.After(30 * time.Second):
		t.Fatal("reads blocked by a streaming PutReader")
	}
	close(r.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if getT(t, s, "slow") != strings.Repeat("z", 10) {
		t.Fatal("streamed value")
	}
}
