package simdr

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/simdr-go/simdr/internal/testclock"
)

// A backup, and a full backup followed by increments, restore the expiries
// as the store had them: keys with a ttl expire on time after the restore,
// a plain put over a ttl key keeps no expiry, a delete stays deleted, the
// expiry records never show as keys, and the restored file opens with the
// same expiry index whether its first increment brought the expiry marker
// (no ttl in the full backup) or not.
func TestBackupSinceExpiry(t *testing.T) {
	for _, ttlInBase := range []bool{false, true} {
		name := "marker in the increment"
		if ttlInBase {
			name = "marker in the full backup"
		}
		t.Run(name, func(t *testing.T) {
			clk := testclock.New()
			opts := &Options{Clock: clk.Now}
			s, _ := openT(t, opts)
			putT(t, s, "plain", "p")
			if ttlInBase {
				if err := s.PutTTL([]byte("early"), []byte("e"), time.Hour); err != nil {
					t.Fatal(err)
				}
			}
			var base bytes.Buffer
			bi, err := s.Backup(&base)
			if err != nil {
				t.Fatal(err)
			}
			// First increment: ttl puts, and a plain put over one.
			for _, p := range []struct {
				key string
				ttl time.Duration
			}{{"short", time.Minute}, {"long", 3 * time.Hour}, {"cleared", time.Minute}, {"gone", time.Minute}} {
				if err := s.PutTTL([]byte(p.key), []byte("v-"+p.key), p.ttl); err != nil {
					t.Fatal(err)
				}
			}
			putT(t, s, "cleared", "no expiry now")
			var inc1 bytes.Buffer
			i1, err := s.BackupSince(&inc1, bi)
			if err != nil {
				t.Fatal(err)
			}
			// Second increment: a delete of a ttl key, a new ttl over a plain key.
			if err := s.Delete([]byte("gone")); err != nil {
				t.Fatal(err)
			}
			if err := s.PutTTL([]byte("plain"), []byte("p2"), 2*time.Hour); err != nil {
				t.Fatal(err)
			}
			var inc2 bytes.Buffer
			if _, err := s.BackupSince(&inc2, i1); err != nil {
				t.Fatal(err)
			}

			restored := filepath.Join(t.TempDir(), "r.simdr")
			img := append(append(bytes.Clone(base.Bytes()), inc1.Bytes()...), inc2.Bytes()...)
			if err := os.WriteFile(restored, img, 0o644); err != nil {
				t.Fatal(err)
			}
			r, err := Open(restored, opts)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			wantLen := 4 // plain, short, long, cleared
			if ttlInBase {
				wantLen++
			}
			check := func(when string) {
				t.Helper()
				if got, want := r.Len(), s.Len(); got != want {
					t.Fatalf("%s: restored Len %d, source %d", when, got, want)
				}
				hidden := map[uint64]bool{markerHash: true}
				for _, k := range []string{"plain", "short", "long", "cleared", "gone", "early"} {
					hidden[recordHash(Hash([]byte(k)))] = true
				}
				n := 0
				for e := range r.Entries() {
					if hidden[e.KeyHash()] {
						t.Fatalf("%s: Entries yields an expiry record or the marker (hash %016x)", when, e.KeyHash())
					}
					n++
				}
				if n != r.Len() {
					t.Fatalf("%s: Entries yields %d, Len %d", when, n, r.Len())
				}
				for _, k := range []string{"plain", "short", "long", "cleared", "gone", "early"} {
					want, werr := s.ExpiresAt([]byte(k))
					got, gerr := r.ExpiresAt([]byte(k))
					if !got.Equal(want) || errors.Is(gerr, ErrNotFound) != errors.Is(werr, ErrNotFound) {
						t.Fatalf("%s: %s expires at %v (%v) restored, %v (%v) in the source", when, k, got, gerr, want, werr)
					}
					ge, gerr := r.Get([]byte(k))
					se, serr := s.Get([]byte(k))
					if (gerr == nil) != (serr == nil) || (gerr == nil && !bytes.Equal(ge.Bytes(), se.Bytes())) {
						t.Fatalf("%s: Get %s: restored %v, source %v", when, k, gerr, serr)
					}
				}
			}
			if r.Len() != wantLen {
				t.Fatalf("restored Len %d, want %d", r.Len(), wantLen)
			}
			check("at once")
			if at, err := r.ExpiresAt([]byte("cleared")); err != nil || !at.IsZero() {
				t.Fatalf("cleared: expires at %v, %v: a plain put over a ttl key must clear it", at, err)
			}
			clk.Advance(2 * time.Minute) // short expires
			check("after 2 minutes")
			if _, err := r.Get([]byte("short")); !errors.Is(err, ErrNotFound) {
				t.Fatalf("short after its ttl: %v", err)
			}
			clk.Advance(3 * time.Hour) // all of them
			check("after 3 hours")
			// Reopened (the restored store wrote a checkpoint on Close).
			r.Close()
			if r, err = Open(restored, opts); err != nil {
				t.Fatal(err)
			}
			check("reopened")
		})
	}
}
