package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/simdr-go/simdr"
	"github.com/simdr-go/simdr/internal/format"
)

// A damaged link below intact entries: verify used to call the 990 entries
// above it "trailing bytes (a torn write)". It reports the broken chain,
// where it breaks and what lies above it, and exits 1; a damaged tombstone
// is listed as such.
func TestVerifyBrokenChainAndTombstone(t *testing.T) {
	f := storePath(t)
	s, err := simdr.Open(f, nil)
	if err != nil {
		t.Fatal(err)
	}
	var ends []int64
	for i := range 100 {
		if err := s.Put(fmt.Appendf(nil, "k%d", i), fmt.Appendf(nil, "value %d", i)); err != nil {
			t.Fatal(err)
		}
		ends = append(ends, s.Size())
	}
	if err := s.Delete([]byte("k3")); err != nil {
		t.Fatal(err)
	}
	tomb := s.Size() - format.TombstoneSize
	if err := s.Put([]byte("last"), []byte("value")); err != nil {
		t.Fatal(err)
	}
	s.Close()
	raw, _ := os.ReadFile(f)
	raw[tomb] = 1         // the tombstone's zero byte
	raw[ends[10]-12] ^= 8 // entry 10's prev
	os.WriteFile(f, raw, 0o644)

	r := fails(t, 1, f, "verify", "--json")
	var rep verifyReport
	if err := json.Unmarshal(r.stdout, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.OK || rep.ChainBrokenAt == nil || rep.ValidChainEnd == nil || *rep.ValidChainEnd != ends[9] ||
		rep.IntactAboveEntries < 90 || rep.TrailingBytes != 0 || fmt.Sprint(rep.BadTombstones) != fmt.Sprint([]int64{tomb}) {
		t.Fatalf("verify --json: %+v", rep)
	}
	r = fails(t, 1, f, "verify")
	out := string(r.stdout)
	if !strings.Contains(out, fmt.Sprintf("CHAIN BROKEN     at offset %d", *rep.ChainBrokenAt)) || !strings.Contains(out, "repair") ||
		!strings.Contains(out, fmt.Sprintf("BAD TOMBSTONE    at offset %d", tomb)) || strings.Contains(out, "TRAILING") {
		t.Fatalf("verify: %s", out)
	}
}
