// Package server serves a simdr Store over HTTP (see the README's "simdr serve").
package server

import (
	"context"
	"errors"
	"time"

	"github.com/simdr-go/simdr"
)

// Config configures the HTTP server.
type Config struct {
	// Addr is the address to listen on, host:port. Default 127.0.0.1:7070.
	Addr string
	// Token, when not empty, is the bearer token every request must carry.
	Token string
	// Insecure allows listening on a non-loopback address without a token.
	Insecure bool
	// MaxValueBytes caps the size of a value PUT to the server (0: no cap).
	MaxValueBytes int64
	// MaxBodyBytes caps the body of batch and get-many requests (0: 64 MiB).
	MaxBodyBytes int64
	// ReadTimeout, WriteTimeout and IdleTimeout bound each connection (0: defaults).
	ReadTimeout, WriteTimeout, IdleTimeout time.Duration
}

// ErrNotImplemented is returned until the server is written.
var ErrNotImplemented = errors.New("server: not implemented")

// ListenAndServe serves store on cfg.Addr until ctx is done, then stops
// accepting, finishes the requests in flight, and syncs the store. It does
// not close the store.
func ListenAndServe(ctx context.Context, store *simdr.Store, cfg Config) error {
	return ErrNotImplemented
}
