//go:build race

package server_test

// raceEnabled halves the load test under the race detector, which slows
// every request down several times.
const raceEnabled = true
