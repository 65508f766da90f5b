//go:build !long

package simdr

// crashRounds is how many times TestCrash kills a writer (1000 with -tags long).
const crashRounds = 20
