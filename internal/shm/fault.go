package shm

import "runtime/debug"

// safe runs fn, which reads or stores into the mapping, and reports whether
// it ran to its end. The state file is a cache that anyone may cut (truncate
// it, or delete and recreate it at the same inode with `: > FILE`): touching
// its page past the new end of the file raises SIGBUS, which would kill the
// process. Under debug.SetPanicOnFault the fault is a panic, recovered here:
// fn's results are then not set (a Load reports no commit, Inflight not ok,
// Word 0), a store is lost, and Faulted reports it from then on. A page the
// file regains (a new writer sizes it again) is read again normally.
func (f *File) safe(fn func()) (ok bool) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			if _, isFault := r.(interface{ Addr() uintptr }); !isFault {
				panic(r)
			}
			f.faulted.Store(true)
			ok = false
		}
	}()
	fn()
	return true
}

// Faulted reports whether a read or store of f's mapping has faulted: another
// process cut the file under it. The writer then stops using f (its stores
// would be lost, and no reader can see them), and so does a follower's Wait.
func (f *File) Faulted() bool { return f.faulted.Load() }
