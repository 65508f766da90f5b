package simdr

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"testing"
)

// TestAttackOverwrittenLongMeta: another process overwrites, in place, the
// metadata of a value over 32 KiB below the last entry (the index does not
// pack such a length: the metadata says where the value starts). Its prev
// then points past the value's end, below its start, or its key hash
// changes. No read may panic or hand back other bytes as the value, and
// Compact must fail with ErrCorrupt, changing nothing. Before the fix
// Compact panicked (slice bounds out of range) on a prev past the end.
func TestAttackOverwrittenLongMeta(t *testing.T) {
	for _, dmg := range []struct {
		name  string
		field int64 // offset in the metadata: 0 key hash, 8 prev
		value func(metaAt int64) uint64
		// A prev below the value's start cannot be told from a true one
		// without reading the value (the limit in docs/reliability.md):
		// reads show a longer value, which fails its checksum, so only
		// Compact and Copy, which check it, must refuse it.
		limit bool
	}{
		{"prev past the end", 8, func(at int64) uint64 { return uint64(at + 5000) }, false},
		{"prev far past the file", 8, func(int64) uint64 { return 1 << 46 }, false},
		{"prev below the start", 8, func(int64) uint64 { return 64 }, true},
		{"prev 0", 8, func(int64) uint64 { return 0 }, true},
		{"key hash", 0, func(int64) uint64 { return 0x0123456789abcdef }, false},
	} {
		for _, op := range []struct {
			name    string
			run     func(t *testing.T, s *Store) error
			checked bool // reads the value and checks its checksum
		}{
			{"Compact", func(_ *testing.T, s *Store) error { return s.Compact() }, true},
			{"Get", func(_ *testing.T, s *Store) error { _, err := s.Get([]byte("long2")); return err }, false},
			{"GetMany", func(_ *testing.T, s *Store) error { _, err := s.GetMany([][]byte{[]byte("long2")}); return err }, false},
			{"ForEachParallel", func(_ *testing.T, s *Store) error {
				return s.ForEachParallel(context.Background(), 2, func(Entry) error { return nil })
			}, false},
			{"Copy", func(t *testing.T, s *Store) error {
				d, _ := openT(t, nil)
				defer d.Close()
				return s.Copy([]byte("long2"), d)
			}, true},
		} {
			t.Run(dmg.name+"/"+op.name, func(t *testing.T) {
				s, path := openT(t, nil)
				model, metaAt := cutStore(t, s)
				f, err := os.OpenFile(path, os.O_RDWR, 0) // another process's descriptor
				if err != nil {
					t.Fatal(err)
				}
				var b [8]byte
				binary.LittleEndian.PutUint64(b[:], dmg.value(metaAt["long2"]))
				if _, err := f.WriteAt(b[:], metaAt["long2"]+dmg.field); err != nil {
					t.Fatal(err)
				}
				f.Close()
				before, _ := os.ReadFile(path)
				err = op.run(t, s)
				if dmg.limit {
					// Reads: no panic is all that can be asked.
					if op.checked && !errors.Is(err, ErrChecksum) {
						t.Fatalf("%s after long2's prev was moved down = %v, want ErrChecksum", op.name, err)
					}
				} else if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("%s after long2's metadata was overwritten = %v, want ErrCorrupt", op.name, err)
				}
				if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
					t.Fatalf("%s changed the file", op.name)
				}
				for e := range s.Entries() {
					if !dmg.limit && e.KeyHash() == Hash([]byte("long2")) {
						t.Fatalf("Entries yielded long2 (%d bytes at %d) with its metadata overwritten", e.Len(), e.Offset())
					}
				}
				for k, v := range model {
					if k == "long2" {
						continue
					}
					if e, err := s.Get([]byte(k)); err != nil || string(e.Bytes()) != v {
						t.Fatalf("Get(%s) = %d bytes, %v", k, e.Len(), err)
					}
				}
			})
		}
	}
}
