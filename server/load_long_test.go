//go:build long

package server_test

// loadRequests is the number of requests TestLoad sends per protocol.
const loadRequests = 400_000
