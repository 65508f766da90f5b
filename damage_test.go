package simdr

import (
	"bytes"
	"errors"
	"os"
)

// checkBroken writes raw, which holds intact entries above a damaged link,
// and opens it: read-only and as the writer, Open must fail with ErrCorrupt
// and leave the file byte for byte as it was; with Repair it must show want
// in size bytes, and the repaired file must open the same way again.
func (c *relRecoveryChecker) checkBroken(what string, raw []byte, want map[uint64][]byte, size int64) {
	t := c.t
	t.Helper()
	c.cases++
	if err := os.WriteFile(c.path, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, ro := range []bool{true, false} {
		s, err := Open(c.path, &Options{ReadOnly: ro})
		if !errors.Is(err, ErrCorrupt) {
			if err == nil {
				s.Close()
			}
			t.Fatalf("%s (read-only %v): Open = %v, want ErrCorrupt", what, ro, err)
		}
		if after, _ := os.ReadFile(c.path); !bytes.Equal(after, raw) {
			t.Fatalf("%s (read-only %v): a failed open changed the file", what, ro)
		}
	}
	for _, opts := range []*Options{{Repair: true}, nil} {
		s, err := Open(c.path, opts)
		if err != nil {
			t.Fatalf("%s: open (%+v): %v", what, opts, err)
		}
		got, gotSize := relSnapshot(t, s), s.Size()
		s.Close()
		if gotSize != size || !relSameState(got, want) {
			t.Fatalf("%s (%+v): %d keys in %d bytes, want %d keys in %d bytes", what, opts, len(got), gotSize, len(want), size)
		}
	}
}
