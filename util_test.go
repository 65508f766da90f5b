package simdr

import (
	"path/filepath"
	"testing"
)

// openT opens (creating) a store in a new temp dir and closes it at cleanup.
func openT(t testing.TB, opts *Options) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "t.simdr")
	return reopenT(t, path, opts), path
}

// reopenT opens the store at path and closes it at cleanup.
func reopenT(t testing.TB, path string, opts *Options) *Store {
	t.Helper()
	s, err := Open(path, opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// putT stores key=value or fails the test.
func putT(t testing.TB, s *Store, key, value string) {
	t.Helper()
	if err := s.Put([]byte(key), []byte(value)); err != nil {
		t.Fatalf("Put(%q): %v", key, err)
	}
}

// getT returns the value of key, or "<absent>".
func getT(t testing.TB, s *Store, key string) string {
	t.Helper()
	e, err := s.Get([]byte(key))
	if err != nil {
		return "<absent>"
	}
	return string(e.Bytes())
}

// checkModel asserts that s holds exactly model: every key's value, Len, and
// the set Entries yields (by key hash).
func checkModel(t testing.TB, s *Store, model map[string]string) {
	t.Helper()
	if s.Len() != len(model) {
		t.Fatalf("Len = %d, want %d", s.Len(), len(model))
	}
	want := make(map[uint64]string, len(model))
	for k, v := range model {
		if got := getT(t, s, k); got != v {
			t.Fatalf("Get(%q) = %q, want %q", k, got, v)
		}
		want[Hash([]byte(k))] = v
	}
	n := 0
	for e := range s.Entries() {
		if v, ok := want[e.KeyHash()]; !ok || v != string(e.Bytes()) {
			t.Fatalf("Entries yields %x=%q, not in the model", e.KeyHash(), e.Bytes())
		}
		if err := e.Verify(); err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != len(model) {
		t.Fatalf("Entries yields %d entries, want %d", n, len(model))
	}
}
