package simdr

// Hooks for the shared state file beside the store (issue 14): the writer's
// committed tail, the bound of its write in flight, and a commit counter that
// followers read instead of scanning the bytes past their tail. Until the
// state file lands these do nothing; recovery and Refresh then fall back to
// scanning the file.

// noteInflight records, before the writer writes bytes up to upto past its
// committed tail, that the bytes below upto may hold its uncommitted write.
// The caller holds wmu.
func (s *Store) noteInflight(g *gen, upto int64) {}

// noteCommit records that the writer's committed tail is now tail (after
// publish). The caller holds wmu.
func (s *Store) noteCommit(g *gen, tail int64) {}

// stateHint returns what the state file knows of a file of size bytes about
// to be recovered: the writer's last committed tail, and whether every byte
// past it (up to size) is known to be the writer's own uncommitted write
// (own), so that recovery can cut there without scanning. ok is false when
// there is no usable state (missing, garbage, stale, another file).
func (s *Store) stateHint(g *gen, size int64) (committed int64, own, ok bool) {
	return 0, false, false
}
