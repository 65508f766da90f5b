// Command goview prints what the Go engine reads in a store file at a given
// time, for the Python reader's tests (python/tests/test_reader_ttl.py) to
// compare with: the Go side of their agreement on expiring keys.
//
//	goview FILE NOW_MS [KEY...]
//
// opens FILE read-only with Options.Clock fixed at NOW_MS (Unix
// milliseconds) and prints one JSON object: "len" (Store.Len), "hashes"
// (the key hashes Entries yields, 16 hex digits, sorted) and "keys": for
// each KEY, null when Get finds nothing, else {"value_b64", "ttl_ms"}
// (Store.TTL in milliseconds, null for no expiry).
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/simdr-go/simdr"
)

type keyView struct {
	Value []byte `json:"value_b64"`
	TTLms *int64 `json:"ttl_ms"`
}

type view struct {
	Len    int                 `json:"len"`
	Hashes []string            `json:"hashes"`
	Keys   map[string]*keyView `json:"keys"`
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "goview:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) < 2 {
		return errors.New("usage: goview FILE NOW_MS [KEY...]")
	}
	ms, err := strconv.ParseInt(args[1], 10, 64)
	if err != nil {
		return err
	}
	now := time.UnixMilli(ms)
	s, err := simdr.Open(args[0], &simdr.Options{ReadOnly: true, Clock: func() time.Time { return now }})
	if err != nil {
		return err
	}
	defer s.Close()
	v := view{Len: s.Len(), Hashes: []string{}, Keys: map[string]*keyView{}}
	for e := range s.Entries() {
		v.Hashes = append(v.Hashes, fmt.Sprintf("%016x", e.KeyHash()))
	}
	slices.Sort(v.Hashes)
	for _, k := range args[2:] {
		e, err := s.Get([]byte(k))
		if errors.Is(err, simdr.ErrNotFound) {
			v.Keys[k] = nil
			continue
		}
		if err != nil {
			return err
		}
		kv := &keyView{Value: e.Bytes()}
		d, err := s.TTL([]byte(k))
		if err != nil {
			return fmt.Errorf("TTL %q after Get found it: %w", k, err)
		}
		if d != simdr.NoExpiry {
			ms := d.Milliseconds()
			kv.TTLms = &ms
		}
		v.Keys[k] = kv
	}
	return json.NewEncoder(os.Stdout).Encode(v)
}
