package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The cluster flags go together, need a token (and both TLS files or
// neither), and fail before the store is created.
func TestServeClusterFlags(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "s.simdr")
	tok := filepath.Join(dir, "tok")
	os.WriteFile(tok, []byte("secret\n"), 0o600)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"id alone", []string{"--raft-id", "n1"}, "--raft-addr"},
		{"no dir", []string{"--raft-id", "n1", "--raft-addr", "127.0.0.1:0", "--bootstrap"}, "--raft-dir"},
		{"no token", []string{"--raft-id", "n1", "--raft-addr", "127.0.0.1:0", "--raft-dir", dir, "--bootstrap"}, "--token-file"},
		{"bootstrap and join", []string{"--token-file", tok, "--raft-id", "n1", "--raft-addr", "127.0.0.1:0", "--raft-dir", dir,
			"--bootstrap", "--join", "http://127.0.0.1:1"}, "exclude"},
		{"tls key only", []string{"--token-file", tok, "--raft-id", "n1", "--raft-addr", "127.0.0.1:0", "--raft-dir", dir,
			"--bootstrap", "--tls-key", "k.pem"}, "--tls-cert"},
		{"tls cert only", []string{"--token-file", tok, "--raft-id", "n1", "--raft-addr", "127.0.0.1:0", "--raft-dir", dir,
			"--bootstrap", "--tls-cert", "c.pem"}, "--tls-key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := fails(t, 2, append([]string{f, "serve"}, tc.args...)...)
			if !strings.Contains(string(r.stderr), tc.want) {
				t.Fatalf("stderr %q, want it to name %s", r.stderr, tc.want)
			}
		})
	}
	mustNotExist(t, f)
	// "status" needs "cluster" where FILE goes, and a URL.
	r := fails(t, 2, f, "status", "http://127.0.0.1:1")
	if !strings.Contains(string(r.stderr), "simdr cluster status URL") {
		t.Fatalf("status on a FILE: %q", r.stderr)
	}
	// Even where "cluster" names a directory (the source tree's root).
	t.Chdir(dir)
	os.Mkdir("cluster", 0o755)
	r = fails(t, 1, "cluster", "status", "http://127.0.0.1:1")
	if !strings.Contains(string(r.stderr), "cluster status:") {
		t.Fatalf("cluster status with a ./cluster directory: %q", r.stderr)
	}
}
