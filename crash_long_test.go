//go:build long

package simdr

// crashRounds is how many times TestCrash kills a writer (20 without -tags long).
const crashRounds = 1000
