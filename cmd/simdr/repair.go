package main

import (
	"fmt"
	"os"

	"github.com/simdr-go/simdr"
)

var cmdRepair = &command{
	name: "repair", args: "",
	summary: "open FILE with Options.Repair and report what it kept and dropped",
	help: `
Opens FILE for writing with Options.Repair (simdr.Open), which salvages the
intact entries of a damaged file and drops the byte ranges that hold none, then
reports what Store.Repaired says it did: the file's size before and after, the
entries kept, those whose link to the entry before had to be rewritten
(relinked), and the dropped ranges (offset and length). A file that needed no
repair is left as it is ("nothing to repair"); a torn tail, which every
writable open cuts, is reported as a dropped range. Exits 0 when FILE opens
afterwards (checked with a fresh read-only open), 1 otherwise. Run verify
first to see what is wrong without changing anything; copy FILE first to keep
the damaged original. FILE must exist.`,
	examples: []string{
		`simdr data.simdr verify || simdr data.simdr repair`,
		`simdr data.simdr repair --json`,
	},
	minArgs: 0, maxArgs: 0, json: true,
	run: runRepair,
}

// repairJSON is repair --json: the RepairReport's fields, and whether
// anything changed.
type repairJSON struct {
	File     string        `json:"file"`
	Repaired bool          `json:"repaired"`
	OldSize  int64         `json:"old_size"`
	NewSize  int64         `json:"new_size"`
	Kept     int           `json:"kept"`
	Relinked int           `json:"relinked"`
	Dropped  []simdr.Range `json:"dropped"`
}

func runRepair(a *app, file string, _ []string) (err error) {
	if err := checkFile(file, false); err != nil {
		return err
	}
	fi, err := os.Stat(file)
	if err != nil {
		return err
	}
	oldSize := fi.Size()
	s, err := a.openWith(file, true, simdr.Options{Repair: true})
	if err != nil {
		return fmt.Errorf("repair: %w", err)
	}
	rep := s.Repaired()
	st := s.Stats()
	if err := s.Close(); err != nil {
		return fmt.Errorf("repair: close: %w", err)
	}
	out := repairJSON{File: file, Dropped: []simdr.Range{}}
	if rep != nil {
		out.Repaired = true
		out.OldSize, out.NewSize, out.Kept, out.Relinked = rep.OldSize, rep.NewSize, rep.Kept, rep.Relinked
		out.Dropped = append(out.Dropped, rep.Dropped...)
	} else {
		// No report: nothing salvaged, but the open may still have cut a
		// torn tail.
		out.OldSize, out.NewSize = oldSize, oldSize
		if fi, err := os.Stat(file); err == nil {
			out.NewSize = fi.Size()
		}
		out.Kept = int(st.Entries + st.Tombstones)
		if out.NewSize < out.OldSize {
			out.Repaired = true
			out.Dropped = append(out.Dropped, simdr.Range{Off: out.NewSize, Len: out.OldSize - out.NewSize})
		}
	}
	// The point of repair: the file opens afterwards.
	check, cerr := simdr.Open(file, &simdr.Options{ReadOnly: true})
	if cerr == nil {
		cerr = check.Close()
	}
	if a.o.json {
		if err := a.printJSON(out); err != nil {
			return err
		}
	} else {
		w := a.stdout
		if !out.Repaired {
			fmt.Fprintf(w, "%s: nothing to repair (%s, %s intact)\n", file, formatBytes(out.NewSize), countUnit(int64(out.Kept), "entry"))
		} else {
			fmt.Fprintf(w, "%s: repaired: %s -> %s; kept %s (%d relinked), dropped %s\n", file,
				countUnit(out.OldSize, "byte"), countUnit(out.NewSize, "byte"),
				countUnit(int64(out.Kept), "entry"), out.Relinked, countUnit(int64(len(out.Dropped)), "range"))
			for _, r := range out.Dropped {
				fmt.Fprintf(w, "DROPPED          offset %d, %s\n", r.Off, countUnit(r.Len, "byte"))
			}
		}
	}
	if cerr != nil {
		return fmt.Errorf("repair: %s still does not open: %w", file, cerr)
	}
	return nil
}
