package simdr

import (
	"fmt"
	"strings"

	"github.com/simdr-go/simdr/internal/format"
)

// VerifyError lists what Verify found wrong. It always matches ErrCorrupt
// (an entry of the file is damaged); it also matches ErrChecksum when some
// values or tombstones fail their checksum.
type VerifyError struct {
	// Bad holds the offsets of the values whose checksum does not match.
	Bad []int64
	// BadTombstones holds the offsets of damaged tombstones: a delete
	// marker whose byte is not 0x00 (it still deletes its key).
	BadTombstones []int64
	// BrokenAt is the end of the last entry the chain could be followed to
	// when it breaks before reaching the start of the file; -1 when whole.
	BrokenAt int64
}

// Error lists the first bad offsets and where the chain breaks.
func (e *VerifyError) Error() string {
	var b strings.Builder
	offsets := func(offs []int64) {
		for i, off := range offs {
			if i == 10 {
				fmt.Fprintf(&b, " …")
				break
			}
			fmt.Fprintf(&b, " @%d", off)
		}
	}
	fmt.Fprintf(&b, "simdr: verify: %d bad checksums", len(e.Bad))
	offsets(e.Bad)
	if len(e.BadTombstones) > 0 {
		fmt.Fprintf(&b, "; %d damaged tombstones", len(e.BadTombstones))
		offsets(e.BadTombstones)
	}
	if e.BrokenAt >= 0 {
		fmt.Fprintf(&b, "; chain broken below offset %d", e.BrokenAt)
	}
	return b.String()
}

// Unwrap lets errors.Is match ErrCorrupt, and ErrChecksum when a checksum
// fails.
func (e *VerifyError) Unwrap() []error {
	errs := []error{ErrCorrupt}
	if len(e.Bad) > 0 || len(e.BadTombstones) > 0 {
		errs = append(errs, ErrChecksum)
	}
	return errs
}

// Verify walks every entry of the file, overwritten and deleted ones included,
// from the tail back to the first, recomputing each checksum (a tombstone's
// byte included) and checking each link of the chain. It returns nil, or a
// *VerifyError listing the bad offsets, or, when another process cut the
// file shorter than the entries the Store knows, an error matching
// ErrCorrupt that says so (never a fault). It reads the file as it is when
// called; writes made meanwhile are not checked.
func (s *Store) Verify() error {
	g := s.cur.Load()
	if g == nil {
		return fmt.Errorf("simdr: verify: %w", ErrClosed)
	}
	verr := &VerifyError{}
	tail := g.tail.Load()
	ra := g.newReadAhead(0, tail, false) // read-ahead: see readahead.go
	// Another process may cut the file under the Store: touching a page past
	// its new end faults (SIGBUS), and a mid-page cut reads as zeros, which
	// are not damage of the entries written.
	faulted := guardFault(func() {
		verr.BrokenAt = format.Audit(g.m.Bytes(), tail, func(e format.Entry, intact bool) {
			ra.at(e.Start)
			switch {
			case intact:
			case e.Tombstone:
				verr.BadTombstones = append(verr.BadTombstones, e.Start)
			default:
				verr.Bad = append(verr.Bad, e.Start)
			}
		})
	})
	if faulted || fileCut(g, tail) {
		if !s.holds(g) {
			return fmt.Errorf("simdr: verify: %w", ErrClosed)
		}
		return fmt.Errorf("simdr: verify: the store file is shorter than the %d bytes of entries this Store read (another process cut it): %w", tail, ErrCorrupt)
	}
	if len(verr.Bad) == 0 && len(verr.BadTombstones) == 0 && verr.BrokenAt < 0 {
		return nil
	}
	return verr
}
