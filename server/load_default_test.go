//go:build !long

package server_test

// loadRequests is the number of requests TestLoad sends per protocol
// (more with -tags long).
const loadRequests = 20_000
