package main

import (
	"errors"
	"fmt"
	"os"
	"runtime/debug"

	"golang.org/x/sys/unix"

	"github.com/simdr-go/simdr"
	"github.com/simdr-go/simdr/internal/format"
)

var cmdVerify = &command{
	name: "verify", args: "",
	summary: "check every entry's checksum and the chain of entries",
	help: `
Walks every entry of FILE, overwritten and deleted ones included, from the last
back to the first: recomputes each value's CRC-32 against the one stored with
it, checks each tombstone's byte, and checks each link of the backward chain.
Lists the offsets of bad values and damaged tombstones; a broken chain (intact
entries above a damaged link, which Open refuses to cut: ` + "`simdr FILE repair`" + `
keeps them all), with where it breaks and what lies above; and bytes after the
last complete entry (a torn write or a damaged last entry, which the next
writable open would cut). Exits 1 if it finds anything. Shows a progress bar on
stderr when stderr is a terminal. FILE must exist and is only read (it may be
verified while another process writes to it).`,
	examples: []string{`simdr data.simdr verify`, `simdr data.simdr verify --json`},
	minArgs:  0, maxArgs: 0, json: true,
	run: runVerify,
}

// verifyReport is what verify found (and its --json form).
type verifyReport struct {
	File          string  `json:"file"`
	OK            bool    `json:"ok"`
	Entries       int64   `json:"entries"`
	Tombstones    int64   `json:"tombstones"`
	CheckedBytes  int64   `json:"checked_bytes"`
	BadOffsets    []int64 `json:"bad_offsets"`
	BadTombstones []int64 `json:"bad_tombstones"`
	// ChainBrokenAt is where the chain breaks: the offset the lowest intact
	// entry above a damaged link links to (IntactAbove* say what lies above
	// it), or where a walk of the chain stops.
	ChainBrokenAt      *int64 `json:"chain_broken_at"`
	IntactAboveBytes   int64  `json:"intact_above_bytes"`
	IntactAboveEntries int    `json:"intact_above_entries"`
	// ValidChainEnd is where the longest valid chain ends when the chain is
	// broken (what Open would have cut to, before refusing).
	ValidChainEnd *int64 `json:"valid_chain_end,omitempty"`
	TrailingBytes int64  `json:"trailing_bytes"`
}

// runVerify checks the file the way Open and Store.Verify do, with the same
// code (internal/format: FindTail and ClassifyTail, the recovery of a
// read-only open, then the walk Store.Verify makes), over a private
// read-only mapping of one open file, so that it can show progress and count
// what it checked.
func runVerify(a *app, file string, _ []string) (err error) {
	f, err := os.Open(file)
	if err != nil {
		return openError(file, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("verify: %s is not a regular file", file)
	}
	rep := verifyReport{File: file, BadOffsets: []int64{}, BadTombstones: []int64{}}
	if n := fi.Size(); n > 0 {
		data, err := unix.Mmap(int(f.Fd()), 0, int(n), unix.PROT_READ, unix.MAP_SHARED)
		if err != nil {
			return fmt.Errorf("verify: mmap: %w", err)
		}
		defer unix.Munmap(data)
		// Another process may cut the file under the mapping (a writable
		// open cutting a torn tail, a repair): a read past the new end faults,
		// which catchFault turns into an error instead of a crash.
		err = catchFault(func() error {
			L, found := format.FindTail(data, 0) // where a reader sees the entries end
			cls := format.TailClass{Kind: format.Torn, L: L, Top: n, Break: n}
			if L < n {
				cls = format.ClassifyTail(data, 0, L, n)
			}
			// The runs to walk, each from its top down to its bottom.
			type run struct{ top, bottom int64 }
			var runs []run
			switch cls.Kind {
			case format.Broken:
				runs = append(runs, run{cls.Top, cls.Break})
				if L > 0 {
					runs = append(runs, run{L, 0})
				}
				rep.ChainBrokenAt = &cls.Break
				rep.IntactAboveBytes, rep.IntactAboveEntries = cls.Top-cls.Break, cls.Entries
				rep.ValidChainEnd = &cls.L
				rep.TrailingBytes = n - cls.Top
			case format.FirstDamaged:
				runs = append(runs, run{cls.Top, 0})
				rep.TrailingBytes = n - cls.Top
			default:
				if !found {
					return fmt.Errorf("no valid entry chain in %d bytes: %w", n, simdr.ErrCorrupt)
				}
				runs = append(runs, run{L, 0})
				rep.TrailingBytes = n - L
			}
			for _, r := range runs {
				rep.CheckedBytes += r.top - r.bottom
			}
			p := a.newProgress("verifying", rep.CheckedBytes)
			p.start()
			defer p.finish() // after a fault too
			var done int64
			for _, r := range runs {
				t := r.top
				for t > r.bottom {
					e, ok := format.Decode(data, t)
					if !ok {
						if rep.ChainBrokenAt == nil {
							rep.ChainBrokenAt = &t
						}
						break
					}
					intact := e.Intact(data)
					switch {
					case e.Tombstone:
						rep.Tombstones++
						if !intact {
							rep.BadTombstones = append(rep.BadTombstones, e.Start)
						}
					default:
						rep.Entries++
						if !intact {
							rep.BadOffsets = append(rep.BadOffsets, e.Start)
						}
					}
					p.done.Store(done + r.top - e.Prev)
					t = e.Prev
				}
				done += r.top - r.bottom
			}
			p.finish()
			return nil
		})
		if err != nil {
			return fmt.Errorf("verify: %s: %w", file, err)
		}
	}
	rep.OK = len(rep.BadOffsets) == 0 && len(rep.BadTombstones) == 0 && rep.ChainBrokenAt == nil && rep.TrailingBytes == 0
	if a.o.json {
		if err := a.printJSON(rep); err != nil {
			return err
		}
	} else {
		w := a.stdout
		for _, off := range rep.BadOffsets {
			fmt.Fprintf(w, "BAD CHECKSUM     value at offset %d\n", off)
		}
		for _, off := range rep.BadTombstones {
			fmt.Fprintf(w, "BAD TOMBSTONE    at offset %d: its byte is not 0x00 (it still deletes its key)\n", off)
		}
		switch {
		case rep.ChainBrokenAt != nil && rep.ValidChainEnd != nil:
			fmt.Fprintf(w, "CHAIN BROKEN     at offset %d: %d intact entries (%s, offsets %d to %d) chain down to it, but no intact entry ends there; "+
				"the longest valid chain ends at %d. Open refuses the file rather than cut them: `simdr %s repair` keeps every intact entry\n",
				*rep.ChainBrokenAt, rep.IntactAboveEntries, formatBytes(rep.IntactAboveBytes),
				*rep.ChainBrokenAt, *rep.ChainBrokenAt+rep.IntactAboveBytes, *rep.ValidChainEnd, file)
		case rep.ChainBrokenAt != nil:
			fmt.Fprintf(w, "CHAIN BROKEN     below offset %d: the entries before it cannot be reached\n", *rep.ChainBrokenAt)
		}
		if rep.TrailingBytes > 0 {
			end := fi.Size() - rep.TrailingBytes
			fmt.Fprintf(w, "TRAILING BYTES   %d after the last complete entry (offset %d): a torn write or a damaged last entry (or an append in progress); a writable open cuts them\n", rep.TrailingBytes, end)
		}
		status := "OK"
		if !rep.OK {
			status = "FAILED"
		}
		fmt.Fprintf(w, "%s: %s: %s, %s, %s checked; %s\n", file, status,
			countUnit(rep.Entries, "value"), countUnit(rep.Tombstones, "tombstone"), formatBytes(rep.CheckedBytes),
			countUnit(int64(len(rep.BadOffsets)+len(rep.BadTombstones)), "bad checksum"))
	}
	if !rep.OK {
		return errReported
	}
	return nil
}

// errCut is catchFault's error: the file was cut under its mapping.
var errCut = errors.New("the file was cut (truncated by another process) while being read; run the command again")

// catchFault runs f, turning a memory fault in it (SIGBUS: the mapped file
// was cut under the mapping by another process) into an error wrapping
// errCut instead of a crash. Any other panic goes on.
func catchFault(f func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			if fe, ok := r.(interface{ Addr() uintptr }); ok {
				err = fmt.Errorf("%w (fault at %#x)", errCut, fe.Addr())
				return
			}
			panic(r)
		}
	}()
	return f()
}
