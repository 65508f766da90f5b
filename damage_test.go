package simdr

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/simdr-go/simdr/internal/format"
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

// ---- Damage is not a torn tail (issue 11, section 1) ----

// dmgEntry is an entry as written: its key hash, its value (nil for a
// tombstone) and where it lies.
type dmgEntry struct {
	h          uint64
	val        []byte
	prev       int64 // where it begins (its stored prev)
	start, end int64 // its payload; the metadata follows
}

func (e dmgEntry) next() int64 { return e.end + format.MetaSize }

// dmgBuild writes ops (a nil value deletes a live key) into a new store at
// path and returns the file and its entries, oldest first.
func dmgBuild(t *testing.T, path string, ops []relModelEntry, opts *Options) ([]byte, []dmgEntry) {
	t.Helper()
	os.Remove(path)
	s, err := Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, op := range ops {
		if op.val == nil {
			err = s.DeleteHash(op.h)
		} else {
			err = s.putHash(op.h, op.val)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var ws []dmgEntry
	format.Walk(raw, 0, int64(len(raw)), func(e format.Entry) bool {
		w := dmgEntry{h: e.Hash, prev: e.Prev, start: e.Start, end: e.End}
		if !e.Tombstone {
			w.val = raw[e.Start:e.End]
		}
		ws = append(ws, w)
		return true
	})
	slices.Reverse(ws)
	if len(ws) != len(ops) {
		t.Fatalf("%d entries in the file, %d written", len(ws), len(ops))
	}
	return raw, ws
}

// dmgSeen is an entry of an opened store's chain.
type dmgSeen struct {
	h     uint64
	tomb  bool
	val   []byte
	start int64
}

// dmgChain returns the chain of s, oldest first.
func dmgChain(s *Store) []dmgSeen {
	data := s.cur.Load().m.Bytes()[:s.Size()]
	var got []dmgSeen
	format.Walk(data, 0, s.Size(), func(e format.Entry) bool {
		g := dmgSeen{h: e.Hash, tomb: e.Tombstone, start: e.Start}
		if !e.Tombstone {
			g.val = bytes.Clone(data[e.Start:e.End])
		}
		got = append(got, g)
		return true
	})
	slices.Reverse(got)
	return got
}

// dmgState is the state a chain shows: the latest value of each key hash.
func dmgState(got []dmgSeen) map[uint64][]byte {
	m := map[uint64][]byte{}
	for _, g := range got {
		if g.tomb {
			delete(m, g.h)
		} else {
			m[g.h] = g.val
		}
	}
	return m
}

// dmgOutcome is what became of the damaged entry d in an opened store.
type dmgOutcome struct {
	dMissing bool // d is not in the chain (cut, or dropped by Repair)
	dChanged bool // d is in the chain with another key hash or other bytes
	hidden   int  // untouched entries missing below d (see dmgMatch)
}

// dmgMatch checks that got is ws with at most the damaged entry d changed
// or missing (missing only as the last entry, unless repaired), and with
// the entries j < d for which hide(j) holds possibly missing: those a prev
// damaged onto another entry's end hides (the chain holds; a limit of Open,
// which does not read values below the newest). offsets requires every
// entry at its old offset (a file not rewritten).
func dmgMatch(ws []dmgEntry, got []dmgSeen, d int, offsets, repaired bool, hide func(j int) bool) (dmgOutcome, error) {
	var o dmgOutcome
	same := func(g dmgSeen, w dmgEntry) bool {
		return g.h == w.h && g.tomb == (w.val == nil) && (g.tomb || bytes.Equal(g.val, w.val)) && (!offsets || g.start == w.start)
	}
	i, j := 0, 0
	for j < len(ws) && i < len(got) {
		g, w := got[i], ws[j]
		switch {
		case same(g, w):
			i, j = i+1, j+1
		case j < d && hide(j):
			o.hidden++
			j++
		case j == d && g.tomb == (w.val == nil) && (i+1 == len(got) || j+1 < len(ws) && same(got[i+1], ws[j+1])):
			o.dChanged = true
			i, j = i+1, j+1
		case j == d:
			o.dMissing = true
			j++
		default:
			return o, fmt.Errorf("entry %d of the chain (hash %x at %d) is not entry %d written (hash %x at %d)", i, g.h, g.start, j, w.h, w.start)
		}
	}
	if i < len(got) {
		return o, fmt.Errorf("%d entries in the chain past the %d written", len(got)-i, len(ws))
	}
	for ; j < len(ws); j++ {
		if j != d {
			return o, fmt.Errorf("written entry %d (of %d) is missing", j, len(ws))
		}
		o.dMissing = true
	}
	if o.dMissing && d != len(ws)-1 && !repaired {
		return o, fmt.Errorf("entry %d is missing, below intact entries", d)
	}
	return o, nil
}

// dmgLayouts are the files of the damaged-file matrix: 3 entries (a value,
// a value, a tombstone), and 100 entries mixing values of every shape (one
// byte, all zeros, ending 64-aligned, up to 3 KiB), overwrites and deletes,
// some tombstones right after a 64-aligned end.
func dmgLayouts() map[string][]relModelEntry {
	r := rand.New(rand.NewPCG(7, 11))
	h := func(i int) uint64 { return Hash(fmt.Appendf(nil, "key%d", i)) }
	val := func(n int) []byte {
		v := make([]byte, n)
		for i := range v {
			v[i] = byte(r.Uint32()) | 1
		}
		return v
	}
	three := []relModelEntry{{h(1), val(50)}, {h(2), val(130)}, {h: h(1)}}
	var hundred []relModelEntry
	live := map[int]bool{}
	for i := 0; len(hundred) < 100; i++ {
		k := r.IntN(30)
		if live[k] && i%5 == 4 {
			hundred = append(hundred, relModelEntry{h: h(k)})
			live[k] = false
			continue
		}
		var v []byte
		switch i % 9 {
		case 0:
			v = val(1)
		case 1:
			v = make([]byte, 100) // all zeros
		case 2, 3:
			v = val(44) // from an aligned start, ends 64-aligned
		case 4:
			v = val(1000 + r.IntN(2000))
		default:
			v = val(2 + r.IntN(300))
		}
		hundred = append(hundred, relModelEntry{h(k), v})
		live[k] = true
	}
	return map[string][]relModelEntry{"3 entries": three, "100 entries": hundred}
}

// dmgTable counts the outcomes of the damaged-file matrix, per damaged field.
type dmgTable map[[2]string]map[string]int

func (tb dmgTable) add(row, col, outcome string) {
	k := [2]string{row, col}
	if tb[k] == nil {
		tb[k] = map[string]int{}
	}
	tb[k][outcome]++
}

// TestDamagedEntryMatrix damages every entry of a 3-entry and a 100-entry
// file: every byte of every metadata record (xor 0xff, and one bit), and one
// byte of every payload (a tombstone's zero byte). Each file is opened
// read-only, as the writer and with Repair. Nothing intact may be lost:
// without Repair the store opens with every untouched entry (the damaged one
// changed, listed by Verify, or cut when it is the last) or fails with
// ErrCorrupt leaving the file as it was; with Repair every untouched entry is
// back, in order. Nothing is invented: the chain is the entries written, the
// damaged one aside, and no deleted key comes back. With SIMDR_DAMAGE_TABLE
// set to a path, the outcome table of docs/reliability.md is written there.
func TestDamagedEntryMatrix(t *testing.T) {
	dir := relFastDir(t)
	path := filepath.Join(dir, "m.simdr")
	tb := dmgTable{}
	cases := 0
	for _, name := range []string{"3 entries", "100 entries"} {
		raw, ws := dmgBuild(t, filepath.Join(dir, "base.simdr"), dmgLayouts()[name], nil)
		for d, w := range ws {
			if d%dmgSample != 0 && d != len(ws)-1 {
				continue
			}
			pos := "a middle entry"
			switch d {
			case 0:
				pos = "the first entry"
			case len(ws) - 1:
				pos = "the last entry"
			}
			kind := "value"
			if w.val == nil {
				kind = "tombstone"
			}
			type flip struct {
				off  int64
				mask byte
			}
			var flips []flip
			for b := range int64(format.MetaSize) {
				flips = append(flips, flip{w.end + b, 0xff}, flip{w.end + b, 1 << (b % 8)})
			}
			flips = append(flips, flip{w.start + (w.end-w.start)/2, 0xff})
			for _, f := range flips {
				field := "payload byte"
				switch b := f.off - w.end; {
				case w.val == nil && b < 0:
					field = "tombstone byte"
				case b < 0:
				case b < 8:
					field = "key hash"
				case b < 16:
					field = "prev"
				default:
					field = "checksum"
				}
				bad := slices.Clone(raw)
				bad[f.off] ^= f.mask
				what := fmt.Sprintf("%s: %s of entry %d (%s) ^%#x at %d", name, field, d, kind, f.mask, f.off)
				rw, rep := dmgCase(t, what, path, bad, ws, d, field)
				row := fmt.Sprintf("%s of %s (%s)", field, pos, kind)
				tb.add(row, "open", rw)
				tb.add(row, "repair", rep)
				cases++
			}
		}
	}
	t.Logf("%d damaged files, each opened read-only, as the writer and with Repair", cases)
	if out := os.Getenv("SIMDR_DAMAGE_TABLE"); out != "" {
		if err := os.WriteFile(out, []byte(tb.markdown()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// markdown renders the table, rows sorted.
func (tb dmgTable) markdown() string {
	rows := map[string]bool{}
	for k := range tb {
		rows[k[0]] = true
	}
	names := slices.Sorted(func(yield func(string) bool) {
		for r := range rows {
			if !yield(r) {
				return
			}
		}
	})
	cell := func(m map[string]int) string {
		var parts []string
		for _, o := range slices.Sorted(func(yield func(string) bool) {
			for o := range m {
				if !yield(o) {
					return
				}
			}
		}) {
			parts = append(parts, fmt.Sprintf("%s (%d)", o, m[o]))
		}
		return strings.Join(parts, "; ")
	}
	var b strings.Builder
	b.WriteString("| damaged byte | Open, read-only and writable | Open with Repair |\n|---|---|---|\n")
	for _, r := range names {
		fmt.Fprintf(&b, "| %s | %s | %s |\n", r, cell(tb[[2]string{r, "open"}]), cell(tb[[2]string{r, "repair"}]))
	}
	return b.String()
}

// dmgCase opens the damaged file bad (entry d damaged in field) read-only,
// as the writer and with Repair, checks every promise, and returns what
// Open and Repair did.
func dmgCase(t *testing.T, what, path string, bad []byte, ws []dmgEntry, d int, field string) (openOutcome, repairOutcome string) {
	t.Helper()
	if err := os.WriteFile(path, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	// A prev damaged onto the end of another entry below still makes a
	// chain; the entries between are hidden (Open does not read values
	// below the newest; Verify lists the damaged one, Repair brings them
	// back).
	hideFrom := d
	if field == "prev" {
		p := int64(binary.LittleEndian.Uint64(bad[ws[d].end+8:]))
		for k := range d - 1 {
			if ws[k].next() == p {
				hideFrom = k + 1
			}
		}
	}
	hide := func(j int) bool { return j >= hideFrom && j < d }
	var roGot []dmgSeen
	for _, ro := range []bool{true, false} {
		s, err := Open(path, &Options{ReadOnly: ro})
		after, _ := os.ReadFile(path)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("%s (read-only %v): Open = %v", what, ro, err)
			}
			if !bytes.Equal(after, bad) {
				t.Fatalf("%s (read-only %v): the failed open changed the file", what, ro)
			}
			if !ro && roGot != nil {
				t.Fatalf("%s: read-only open worked, writable failed: %v", what, err)
			}
			openOutcome = "ErrCorrupt, file untouched"
			continue
		}
		got := dmgChain(s)
		o, err := dmgMatch(ws, got, d, true, false, hide)
		if err != nil {
			s.Close()
			t.Fatalf("%s (read-only %v): %v", what, ro, err)
		}
		dmgCheckStore(t, what, s, got, ws, d, o, field)
		size := s.Size()
		s.Close()
		if want := bad[:size]; ro && !bytes.Equal(after, bad) || !ro && !bytes.Equal(after, want) {
			t.Fatalf("%s (read-only %v): the file is %d bytes after the open, want %d", what, ro, len(after), size)
		}
		if ro {
			roGot = got
		} else if roGot == nil || len(roGot) != len(got) {
			t.Fatalf("%s: the read-only and writable opens differ", what)
		}
		openOutcome = dmgDescribe(o, ws[d], field, false)
	}
	// Repair (from the damaged bytes again: the writable open may have cut).
	if err := os.WriteFile(path, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := Open(path, &Options{Repair: true})
	if err != nil {
		t.Fatalf("%s: repair: %v", what, err)
	}
	got := dmgChain(s)
	o, err := dmgMatch(ws, got, d, false, true, func(int) bool { return false })
	if err != nil {
		s.Close()
		t.Fatalf("%s: repaired: %v", what, err)
	}
	dmgCheckStore(t, what+" (repaired)", s, got, ws, d, o, field)
	s.Close()
	s, err = Open(path, nil)
	if err != nil {
		t.Fatalf("%s: open after repair: %v", what, err)
	}
	if again := dmgChain(s); len(again) != len(got) {
		t.Fatalf("%s: the repaired file opens as something else", what)
	}
	s.Close()
	return openOutcome, dmgDescribe(o, ws[d], field, true)
}

// dmgCheckStore checks an opened store against its chain: the state is the
// chain's (nothing resurrected), and Verify lists exactly the damaged entry
// when it shows bytes that fail their checksum, nothing else.
func dmgCheckStore(t *testing.T, what string, s *Store, got []dmgSeen, ws []dmgEntry, d int, o dmgOutcome, field string) {
	t.Helper()
	want := dmgState(got)
	n := 0
	for e := range s.Entries() {
		n++
		if v, ok := want[e.KeyHash()]; !ok || !bytes.Equal(v, e.Bytes()) {
			t.Fatalf("%s: key hash %x shows a value its chain does not end with", what, e.KeyHash())
		}
	}
	if n != len(want) || s.Len() != n {
		t.Fatalf("%s: %d live keys, the chain has %d", what, n, len(want))
	}
	if ws[d].val == nil && !o.dMissing && field != "key hash" {
		// The tombstone is there: its key is live only if written again.
		full := map[uint64][]byte{}
		for _, w := range ws {
			if w.val == nil {
				delete(full, w.h)
			} else {
				full[w.h] = w.val
			}
		}
		if _, live := want[ws[d].h]; live != (full[ws[d].h] != nil) {
			t.Fatalf("%s: the deleted key is back", what)
		}
	}
	var listed []int64
	if err := s.Verify(); err != nil {
		var ve *VerifyError
		if !errors.As(err, &ve) || ve.BrokenAt != -1 || !errors.Is(err, ErrCorrupt) || !errors.Is(err, ErrChecksum) {
			t.Fatalf("%s: Verify = %v", what, err)
		}
		listed = append(ve.Bad, ve.BadTombstones...)
	}
	// Verify lists the entries whose bytes fail their checksum: only the
	// damaged one may, and it must when shown with touched payload or
	// checksum bytes.
	var expect []int64
	for _, g := range got {
		if g.tomb {
			continue
		}
		if crc := format.ReadMeta(s.cur.Load().m.Bytes()[g.start+int64(len(g.val)):]).CRC; crc != format.Checksum(g.val) {
			expect = append(expect, g.start)
		}
	}
	data := s.cur.Load().m.Bytes()
	for _, g := range got {
		if g.tomb && data[g.start] != 0 {
			expect = append(expect, g.start)
		}
	}
	slices.Sort(listed)
	slices.Sort(expect)
	if !slices.Equal(listed, expect) || len(listed) > 1 || len(listed) == 1 && !o.dChanged && field != "checksum" && field != "tombstone byte" {
		t.Fatalf("%s: Verify lists %v, want %v (the damaged entry only)", what, listed, expect)
	}
}

// dmgDescribe names an outcome for the table.
func dmgDescribe(o dmgOutcome, w dmgEntry, field string, repaired bool) string {
	switch {
	case o.hidden > 0:
		return "opens; the entries between its damaged prev and the true one are hidden, Verify lists it (limit)"
	case o.dMissing && repaired:
		return "entry dropped"
	case o.dMissing:
		return "opens without the entry (cut)"
	case o.dChanged && field == "key hash":
		return "entry under another key hash (limit)"
	case o.dChanged && repaired:
		return "damaged value kept (its links hold), listed by Verify"
	case o.dChanged:
		return "opens; value damaged, listed by Verify"
	case repaired && w.val == nil && (field == "checksum" || field == "tombstone byte"):
		return "tombstone kept, healed"
	case field == "checksum" && w.val != nil || field == "tombstone byte":
		if repaired {
			return "entry kept" + map[bool]string{true: ", listed by Verify", false: ", healed"}[w.val != nil]
		}
		return "opens; entry listed by Verify"
	case repaired:
		return "every entry kept"
	}
	return "opens whole"
}

// dmgFlipBit flips bit of the byte at off in the file at path.
func dmgFlipBit(t *testing.T, path string, off int64, bit uint) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	raw[off] ^= 1 << bit
	if err := os.WriteFile(path, raw, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestDamagedLinkKeepsIntactEntries is issue 11's repro: 1,000 Puts with
// SyncWrites, then one bit of entry 10's prev flipped. Open used to cut the
// file to the first 10 entries, fsynced (990 intact entries gone), read-only
// opens showed 10 keys. Now both fail with ErrCorrupt naming the offset,
// leaving the file as it was, and Repair relinks the entry in place: 1,000
// keys back.
func TestDamagedLinkKeepsIntactEntries(t *testing.T) {
	// (Bits whose flip lands on another entry's end are the limit the
	// matrix shows: the chain still holds, hiding the entries between.)
	for _, bit := range []uint{0, 3, 5, 40} {
		t.Run(fmt.Sprint("bit", bit), func(t *testing.T) {
			path := filepath.Join(relFastDir(t), "k.simdr")
			var ops []relModelEntry
			m := map[uint64][]byte{}
			for i := range 1000 {
				k, v := fmt.Appendf(nil, "key%d", i), fmt.Appendf(nil, "value %d", i)
				ops = append(ops, relModelEntry{Hash(k), v})
				m[Hash(k)] = v
			}
			raw, ws := dmgBuild(t, path, ops, &Options{SyncWrites: true})
			dmgFlipBit(t, path, ws[10].end+8+int64(bit/8), bit%8)
			bad, _ := os.ReadFile(path)
			for _, ro := range []bool{false, true} {
				_, err := Open(path, &Options{ReadOnly: ro})
				if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), fmt.Sprintf("ends at %d", ws[9].next())) || !strings.Contains(err.Error(), "989 intact") && !strings.Contains(err.Error(), "990 intact") || !strings.Contains(err.Error(), "Repair") {
					t.Fatalf("Open (read-only %v) = %v, want ErrCorrupt naming the break, the 989 or 990 entries above and Repair", ro, err)
				}
				if after, _ := os.ReadFile(path); !bytes.Equal(after, bad) {
					t.Fatalf("the failed open (read-only %v) changed the file", ro)
				}
			}
			s, err := Open(path, &Options{Repair: true})
			if err != nil {
				t.Fatal(err)
			}
			got := relSnapshot(t, s)
			rep := s.Repaired()
			s.Close()
			if !relSameState(got, m) {
				t.Fatalf("repaired: %d keys, want 1000", len(got))
			}
			if rep == nil || rep.Kept != 1000 || rep.Relinked != 1 || len(rep.Dropped) != 0 || rep.Rewritten || rep.NewSize != int64(len(raw)) {
				t.Fatalf("Repaired() = %+v", rep)
			}
			if after, _ := os.ReadFile(path); !bytes.Equal(after, raw) {
				t.Fatal("the repaired file is not the file as written")
			}
		})
	}
}

// TestDamagedOldValueOpens: a flipped bit in the first entry of the Rust
// vector small.bin (alpha's first value, overwritten since) made simdr refuse
// the file ("no valid entry chain"), and Repair truncated it to 0 bytes. The
// Rust original reads every live value. Now it opens (read-only and as the
// writer, the file untouched), every live value reads right, Verify lists the
// bad one, and Repair keeps every entry.
func TestDamagedOldValueOpens(t *testing.T) {
	path := filepath.Join(t.TempDir(), "small.bin")
	raw, err := os.ReadFile(filepath.Join("testdata", "vectors", "small.bin"))
	if err != nil {
		t.Fatal(err)
	}
	raw[1] ^= 0x04 // "hello" → "hallo"
	if err := os.WriteFile(path, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"alpha": "HELLO again, overwritten", "gamma": "\x01\x02\x03"}
	for _, opts := range []*Options{{ReadOnly: true}, nil, {Repair: true}} {
		s, err := Open(path, opts)
		if err != nil {
			t.Fatalf("Open(%+v) = %v", opts, err)
		}
		for k, v := range want {
			if e, err := s.Get([]byte(k)); err != nil || string(e.Bytes()) != v {
				t.Fatalf("Open(%+v): Get(%s) = %q, %v", opts, k, e.Bytes(), err)
			}
		}
		if s.Has([]byte("beta")) || s.Len() != 2 {
			t.Fatalf("Open(%+v): beta is back or Len %d", opts, s.Len())
		}
		var ve *VerifyError
		if err := s.Verify(); !errors.As(err, &ve) || !slices.Equal(ve.Bad, []int64{0}) || !errors.Is(err, ErrChecksum) || !errors.Is(err, ErrCorrupt) {
			t.Fatalf("Open(%+v): Verify = %v, want offset 0 listed", opts, err)
		}
		if s.Repaired() != nil {
			t.Fatalf("Repaired() = %+v: nothing to change", s.Repaired())
		}
		s.Close()
		if after, _ := os.ReadFile(path); !bytes.Equal(after, raw) {
			t.Fatalf("Open(%+v) changed the file", opts)
		}
	}
}

// TestDamagedTombstoneStaysDeleted: a tombstone whose zero byte flips used
// to bring its key back as the value "\x01" (prev 64-aligned: the byte read
// as a one-byte value) or to break the chain (the byte read as nothing);
// as the newest entry, the tombstone was cut and the old value came back.
// Now the key stays deleted, Verify lists the tombstone, Repair heals it.
func TestDamagedTombstoneStaysDeleted(t *testing.T) {
	k, other := []byte("gone"), []byte("other")
	for _, tc := range []struct {
		name    string
		aligned bool // the tombstone's prev is a multiple of 64
		last    bool // the tombstone is the newest entry
	}{{"unaligned middle", false, false}, {"unaligned last", false, true}, {"aligned middle", true, false}, {"aligned last", true, true}} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "t.simdr")
			n := 30
			if tc.aligned {
				n = 44 // from offset 0, the entry ends at 64
			}
			ops := []relModelEntry{{Hash(k), bytes.Repeat([]byte("v"), n)}, {h: Hash(k)}}
			if !tc.last {
				ops = append(ops, relModelEntry{Hash(other), []byte("still here")})
			}
			_, ws := dmgBuild(t, path, ops, nil)
			if tomb := ws[1]; (tomb.prev%64 == 0) != tc.aligned {
				t.Fatalf("tombstone at %d", tomb.prev)
			}
			dmgFlipBit(t, path, ws[1].start, 0)
			for _, opts := range []*Options{{ReadOnly: true}, nil, {Repair: true}} {
				s, err := Open(path, opts)
				if err != nil {
					t.Fatalf("Open(%+v) = %v", opts, err)
				}
				if _, err := s.Get(k); !errors.Is(err, ErrNotFound) || s.Has(k) {
					t.Fatalf("Open(%+v): Get(%s) = %v: the deleted key is back", opts, k, err)
				}
				if !tc.last {
					if e, err := s.Get(other); err != nil || string(e.Bytes()) != "still here" {
						t.Fatalf("Open(%+v): Get(other) = %v", opts, err)
					}
				}
				err = s.Verify()
				if opts != nil && opts.Repair {
					if err != nil || s.Repaired() == nil || s.Repaired().Healed != 1 {
						t.Fatalf("repaired: Verify = %v, Repaired = %+v", err, s.Repaired())
					}
				} else {
					var ve *VerifyError
					if !errors.As(err, &ve) || !slices.Equal(ve.BadTombstones, []int64{ws[1].start}) || len(ve.Bad) != 0 || !errors.Is(err, ErrCorrupt) {
						t.Fatalf("Open(%+v): Verify = %v, want the tombstone at %d listed", opts, err, ws[1].start)
					}
				}
				s.Close()
			}
		})
	}
}

// TestRepairSalvagesAroundDamage: several damaged regions in one file (a
// payload and its metadata overwritten with junk, a prev damaged, a torn
// tail after them): Repair keeps every untouched entry, in order, writing
// them into a new file (entries move down over the dropped bytes), keeps the
// file's mode, and reports what it dropped.
func TestRepairSalvagesAroundDamage(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "r.simdr")
	var ops []relModelEntry
	for i := range 200 {
		ops = append(ops, relModelEntry{Hash(fmt.Appendf(nil, "k%d", i)), bytes.Repeat([]byte{byte(i) | 1}, 10+i*7%300)})
	}
	raw, ws := dmgBuild(t, path, ops, nil)
	bad := slices.Clone(raw)
	junk := func(from, to int64) {
		for i := from; i < to; i++ {
			bad[i] = byte(i*131) | 0x80
		}
	}
	junk(ws[20].start+3, ws[21].start+5) // entry 20's tail, its metadata and entry 21's start
	bad[ws[50].end+8] ^= 0x40            // entry 50's prev
	junk(ws[120].end, ws[120].next())    // entry 120's metadata
	bad = append(bad, bytes.Repeat([]byte{7}, 100)...)
	if err := os.WriteFile(path, bad, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(path, nil); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open = %v, want ErrCorrupt", err)
	}
	s, err := Open(path, &Options{Repair: true})
	if err != nil {
		t.Fatal(err)
	}
	got := dmgChain(s)
	rep := s.Repaired()
	s.Close()
	lost := map[int]bool{20: true, 21: true, 120: true}
	var want []dmgEntry
	for i, w := range ws {
		if !lost[i] {
			want = append(want, w)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("repaired: %d entries, want %d", len(got), len(want))
	}
	for i, g := range got {
		if g.h != want[i].h || !bytes.Equal(g.val, want[i].val) {
			t.Fatalf("repaired entry %d is not the one written", i)
		}
	}
	if rep == nil || !rep.Rewritten || rep.Kept != len(want) || len(rep.Dropped) != 3 || rep.Relinked == 0 || rep.OldSize != int64(len(bad)) {
		t.Fatalf("Repaired() = %+v", rep)
	}
	if d := rep.Dropped[2]; d.Off+d.Len != int64(len(bad)) {
		t.Fatalf("the torn tail is not the last range dropped: %+v", rep.Dropped)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Size() != rep.NewSize {
		t.Fatalf("repaired file: %v, %v (report %+v)", fi.Mode(), err, rep)
	}
	if names := dirNames(t, dir); len(names) != 1 {
		t.Fatalf("files left beside the store: %v", names)
	}
}
