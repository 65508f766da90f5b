package main

import (
	"fmt"
	"os"

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
it and checks each link of the backward chain. Lists the offsets of bad values,
where the chain breaks, and bytes after the last complete entry (a torn write
or a damaged last entry, which the next writable open would cut). Exits 1 if it
finds anything. Shows a progress bar on stderr when stderr is a terminal. FILE
must exist and is only read (it may be verified while another process writes
to it).`,
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
	ChainBrokenAt *int64  `json:"chain_broken_at"`
	TrailingBytes int64   `json:"trailing_bytes"`
}

// runVerify checks the file the way Store.Verify does, with the same code
// (internal/format: FindTail, the recovery of a read-only open, then Check,
// the walk Store.Verify makes), over a private read-only mapping of one open
// file, so that it can show progress and count what it checked.
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
	rep := verifyReport{File: file, BadOffsets: []int64{}}
	if n := fi.Size(); n > 0 {
		data, err := unix.Mmap(int(f.Fd()), 0, int(n), unix.PROT_READ, unix.MAP_SHARED)
		if err != nil {
			return fmt.Errorf("verify: mmap: %w", err)
		}
		defer unix.Munmap(data)
		size, found := format.FindTail(data, 0) // where a reader sees the entries end
		if !found {
			return fmt.Errorf("verify: %s: no valid entry chain in %d bytes: %w", file, n, simdr.ErrCorrupt)
		}
		rep.CheckedBytes, rep.TrailingBytes = size, n-size
		p := a.newProgress("verifying", size)
		p.start()
		broken := format.Check(data, size, func(e format.Entry, valid bool) {
			if e.Tombstone {
				rep.Tombstones++
			} else {
				rep.Entries++
			}
			if !valid {
				rep.BadOffsets = append(rep.BadOffsets, e.Start)
			}
			p.done.Store(size - e.Prev)
		})
		if broken >= 0 {
			rep.ChainBrokenAt = &broken
		}
		p.finish()
	}
	rep.OK = len(rep.BadOffsets) == 0 && rep.ChainBrokenAt == nil && rep.TrailingBytes == 0
	if a.o.json {
		if err := a.printJSON(rep); err != nil {
			return err
		}
	} else {
		w := a.stdout
		for _, off := range rep.BadOffsets {
			fmt.Fprintf(w, "BAD CHECKSUM     value at offset %d\n", off)
		}
		if rep.ChainBrokenAt != nil {
			fmt.Fprintf(w, "CHAIN BROKEN     below offset %d: the entries before it cannot be reached\n", *rep.ChainBrokenAt)
		}
		if rep.TrailingBytes > 0 {
			fmt.Fprintf(w, "TRAILING BYTES   %d after the last complete entry (offset %d): a torn write or a damaged last entry (or an append in progress); a writable open cuts them\n", rep.TrailingBytes, rep.CheckedBytes)
		}
		status := "OK"
		if !rep.OK {
			status = "FAILED"
		}
		fmt.Fprintf(w, "%s: %s: %s, %s, %s checked; %s\n", file, status,
			plural(rep.Entries, "value"), plural(rep.Tombstones, "tombstone"), formatBytes(rep.CheckedBytes),
			plural(int64(len(rep.BadOffsets)), "bad checksum"))
	}
	if !rep.OK {
		return errReported
	}
	return nil
}

// plural formats n with noun, adding an s unless n is 1.
func plural(n int64, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
