//go:build !race || long

package simdr

// dmgSample: the damaged-entry matrix damages every entry (see
// damage_race_test.go).
const dmgSample = 1
