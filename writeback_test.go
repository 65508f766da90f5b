package simdr

import (
	"bytes"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/simdr-go/simdr/internal/vfs"
)

// TestWriteback: every whole 8 MiB of the file that commits complete is
// handed to the kernel's writeback once, in order, below the tail; with
// SyncWrites (each commit synced) none is.
func TestWriteback(t *testing.T) {
	defer func(f func(vfs.File, int64, int64)) { startWriteback = f }(startWriteback)
	for _, syncWrites := range []bool{false, true} {
		t.Run(fmt.Sprint("SyncWrites=", syncWrites), func(t *testing.T) {
			type span struct{ off, n int64 }
			var got []span
			startWriteback = func(f vfs.File, off, n int64) {
				got = append(got, span{off, n})
				vfs.Writeback(f, off, n)
			}
			s, err := Open(filepath.Join(t.TempDir(), "w"), &Options{SyncWrites: syncWrites})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			var b Batch
			v := bytes.Repeat([]byte("w"), 3000)
			size := 1
			for i := 0; s.Size() < 3*writebackEvery+writebackEvery/2; i++ {
				b.Put([]byte(fmt.Sprint(i)), v)
				if b.Len() == size { // batches of varied sizes, some crossing a boundary with room to spare
					if err := s.Apply(&b); err != nil {
						t.Fatal(err)
					}
					b.Reset()
					size = 1 + (size*37)%700
				}
				if i%1000 == 999 {
					if err := s.Put([]byte("single"), v); err != nil { // and single Puts
						t.Fatal(err)
					}
				}
			}
			if syncWrites {
				if len(got) != 0 {
					t.Fatalf("writeback asked with SyncWrites: %v", got)
				}
				return
			}
			var next int64
			for _, sp := range got {
				if sp.off != next || sp.n <= 0 || sp.n%writebackEvery != 0 {
					t.Fatalf("writeback spans %v: not whole %d-byte stretches in order from 0", got, writebackEvery)
				}
				next += sp.n
			}
			if want := s.Size() / writebackEvery * writebackEvery; next != want {
				t.Fatalf("writeback covered %d bytes of %d, want %d", next, s.Size(), want)
			}
		})
	}
}
