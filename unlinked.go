package simdr

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// checkLinked fails the Store when its file has no name left: another
// program removed it, or renamed another file over its path. Every write to
// it from then on is lost once the Store closes (nobody can open it again),
// so a Sync, or a write's sync with Options.SyncWrites, must not report it
// durable. The check is one fstat, made where a sync is made anyway; a
// write without a sync is not checked (see docs/reliability.md). A move of
// the file (or its directory) within the file system keeps its name count,
// and passes. The caller holds wmu.
func (s *Store) checkLinked(g *gen) error {
	var st unix.Stat_t
	if err := unix.Fstat(int(g.f.Fd()), &st); err != nil {
		return fmt.Errorf("stat before syncing: %w", err)
	}
	if st.Nlink == 0 {
		err := fmt.Errorf("the store file has no name left (another program removed it, or renamed another file over %s): what is written to it would be lost: %w", s.path, ErrCorrupt)
		s.failed = err
		return err
	}
	return nil
}
