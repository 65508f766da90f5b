//go:build race

package index

// raceEnabled: see plain.go.
const raceEnabled = true
