package simdr

import (
	"bytes"
	"hash/crc32"
	"io"
	"os"
	"runtime"
	"testing"
)

// memWriter checks what it is given against the store file (by CRC, so
// it keeps nothing) and samples the heap now and then, for the peak.
type memWriter struct {
	n, every, next int64
	crc            uint32
	peak           uint64 // the highest HeapInuse seen during the writes
}

func (w *memWriter) Write(p []byte) (int, error) {
	w.crc = crc32.Update(w.crc, crc32.IEEETable, p)
	w.n += int64(len(p))
	if w.n >= w.next {
		w.next += w.every
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		w.peak = max(w.peak, ms.HeapInuse)
	}
	return len(p), nil
}

// Backup and BackupSince run in constant memory: the bytes stream from the
// mapping. Backing up a store 64 times the bound allocates less than the
// bound in all and the heap in use never grows by it, while the backup
// written is the store file byte for byte.
func TestGapsBackupConstantMemory(t *testing.T) {
	const (
		storeBytes = 256 << 20
		bound      = storeBytes / 64 // 4 MiB
	)
	s, path := openT(t, &Options{CheckpointBytes: -1})
	v := bytes.Repeat([]byte("0123456789abcdef"), (1<<20)/16)
	half := BackupInfo{}
	for i := 0; i < storeBytes>>20; i++ {
		v[0] = byte(i)
		if err := s.Put([]byte{byte(i), byte(i >> 8)}, v); err != nil {
			t.Fatal(err)
		}
		if i == (storeBytes>>20)/8 {
			var err error
			if half, err = s.Backup(io.Discard); err != nil {
				t.Fatal(err)
			}
		}
	}
	v = nil
	file, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		backup func(w io.Writer) (BackupInfo, error)
		want   []byte
	}{
		{"Backup", s.Backup, file},
		{"BackupSince", func(w io.Writer) (BackupInfo, error) { return s.BackupSince(w, half) }, file[half.Tail:]},
	}
	wantCRC := make([]uint32, len(tests))
	for i, tc := range tests {
		wantCRC[i] = crc32.ChecksumIEEE(tc.want)
	}
	file = nil
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := &memWriter{every: 16 << 20}
			runtime.GC()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			w.peak = before.HeapInuse
			info, err := tc.backup(w)
			runtime.ReadMemStats(&after)
			if err != nil {
				t.Fatal(err)
			}
			if w.n != int64(len(tests[i].want)) || w.crc != wantCRC[i] || info.Tail != s.Size() {
				t.Fatalf("the backup wrote %d bytes (crc %08x), want %d (crc %08x); tail %d of %d",
					w.n, w.crc, len(tests[i].want), wantCRC[i], info.Tail, s.Size())
			}
			if w.n < 32*bound {
				t.Fatalf("the backup is %d bytes: too small to tell constant memory", w.n)
			}
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > bound {
				t.Errorf("%d bytes allocated backing up %d bytes (bound %d)", alloc, w.n, bound)
			}
			if grew := int64(w.peak) - int64(before.HeapInuse); grew > bound {
				t.Errorf("the heap in use grew by %d bytes during the backup (bound %d)", grew, bound)
			}
			t.Logf("%s of %d MiB: %d bytes allocated, heap peak +%d bytes", tc.name, w.n>>20,
				after.TotalAlloc-before.TotalAlloc, int64(w.peak)-int64(before.HeapInuse))
		})
	}
}
