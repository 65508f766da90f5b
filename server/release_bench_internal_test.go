package server

import (
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"

	"github.com/simdr-go/simdr"
)

// mutexReaders is the readers of before, a map of periods under one mutex
// taken twice per request: the baseline of BenchmarkReaders.
type mutexReaders struct {
	mu     sync.Mutex
	period uint64
	n      map[uint64]int
}

func (rs *mutexReaders) enter() uint64 {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.n == nil {
		rs.n = map[uint64]int{}
	}
	p := rs.period
	rs.n[p]++
	return p
}

func (rs *mutexReaders) leave(p uint64) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.n[p]--; rs.n[p] == 0 {
		delete(rs.n, p)
	}
}

// BenchmarkReaders: one enter and leave per request, from parallel
// goroutines, with the mutex of before and with the atomic counter now.
// Compare the two in the same run (-cpu 1,2,4 -count N; benchstat).
func BenchmarkReaders(b *testing.B) {
	b.Run("mutex", func(b *testing.B) {
		var rs mutexReaders
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				rs.leave(rs.enter())
			}
		})
	})
	b.Run("atomic", func(b *testing.B) {
		var rs readers
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				rs.leave(rs.enter("/v1/keys/{key}"))
			}
		})
	})
}

// BenchmarkHandlerGet: a whole GET of a small value through the handler,
// from parallel goroutines: what the readers' cost is a part of.
func BenchmarkHandlerGet(b *testing.B) {
	st, err := simdr.Open(filepath.Join(b.TempDir(), "s.simdr"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	st.Put([]byte("k"), []byte("value"))
	h := newHandler(st, Config{}.withDefaults(), false)
	b.RunParallel(func(pb *testing.PB) {
		req := httptest.NewRequest("GET", "/v1/keys/k", nil)
		for pb.Next() {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != http.StatusOK {
				b.Fatal(w.Code)
			}
		}
	})
}
