//go:build race && !long

package simdr

// dmgSample makes the damaged-entry matrix damage every third entry of its
// 100-entry file (and the first and last) under the race detector, which
// makes each open several times slower; -tags long (or a run without -race)
// damages every entry.
const dmgSample = 3
