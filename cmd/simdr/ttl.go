package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"time"
	"unicode/utf8"

	"github.com/simdr-go/simdr"
	"github.com/simdr-go/simdr/internal/spool"
)

// reservedPrefix starts the keys under which the library keeps its expiry
// records (simdr.ErrReservedKey): batch refuses such a key on its line,
// before anything is applied (the library would refuse the whole batch).
const reservedPrefix = "\x00simdr.ttl\x00"

// ttlFlag is --ttl: a Go duration (90s, 10m, 24h), which must be positive.
type ttlFlag struct {
	d   time.Duration
	set bool
}

func (f *ttlFlag) String() string {
	if f == nil || !f.set {
		return ""
	}
	return f.d.String()
}

func (f *ttlFlag) Set(s string) error {
	d, err := parseTTL(s)
	if err != nil {
		return err
	}
	f.d, f.set = d, true
	return nil
}

// parseTTL parses a ttl given as a Go duration; it must be positive.
func parseTTL(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("want a Go duration such as 90s, 10m or 24h (%v)", err)
	}
	if d <= 0 {
		return 0, errors.New("a ttl must be positive")
	}
	return d, nil
}

// ttlFlags registers write's --ttl.
func ttlFlags(fs *flag.FlagSet, o *opts) {
	fs.Var(&o.ttl, "ttl", "make the value expire `DURATION` after it is written (a Go duration: 90s, 10m, 24h)")
}

// putStdinTTL stores stdin under key to expire after ttl. The library
// streams only values without an expiry (PutReader), so stdin is spooled
// to an anonymous temporary file beside FILE, mapped, and stored from the
// mapping with PutTTL: the value is never read into the heap. in counts
// the bytes read; ctx cancels the read (Ctrl-C).
func putStdinTTL(ctx context.Context, s *simdr.Store, file, key string, in io.Reader, ttl time.Duration) (int64, error) {
	f, err := spool.Create(filepath.Dir(file))
	if err != nil {
		return 0, fmt.Errorf("spooling the value: %w", err)
	}
	defer f.Close()
	n, err := io.Copy(f, in)
	if ctx.Err() != nil {
		return n, ctx.Err()
	}
	if err != nil {
		return n, fmt.Errorf("reading value after %d bytes: %w", n, err)
	}
	b, unmap, err := spool.Map(f)
	if errors.Is(err, spool.ErrEmpty) {
		return 0, fmt.Errorf("0 bytes: %w", simdr.ErrInvalidValue)
	}
	if err != nil {
		return 0, err
	}
	defer unmap()
	return n, s.PutTTL([]byte(key), b, ttl)
}

// ---- ttl --------------------------------------------------------------------

var cmdTTL = &command{
	name: "ttl", args: "KEY",
	summary: "print how long KEY's value has left before it expires",
	help: `
Prints how long the value of KEY has left before it expires, in whole
milliseconds as a Go duration (9m59.998s), or "no expiry" for a value
stored without a TTL (write without --ttl). A missing key, or one whose
value has expired, prints 'key "KEY" not found' on stderr and exits 1, as
read does. FILE must exist and is only read.

--json prints {"key": KEY, "ttl_ms": N}, N null for no expiry ("key_b64"
for a key that is not UTF-8).`,
	examples: []string{
		`simdr data.simdr write session "token" --ttl 30m`,
		`simdr data.simdr ttl session`,
		`simdr data.simdr ttl session --json | jq .ttl_ms`,
	},
	minArgs: 1, maxArgs: 1, json: true,
	run: runTTL,
}

func runTTL(a *app, file string, args []string) (err error) {
	key := args[0]
	s, err := a.openRead(file)
	if err != nil {
		return err
	}
	defer closeStore(s, &err)
	d, err := ttlOf(s, key)
	if err != nil {
		return err
	}
	if a.o.json {
		out := map[string]any{"ttl_ms": nil}
		if d != simdr.NoExpiry {
			out["ttl_ms"] = d.Milliseconds()
		}
		if utf8.ValidString(key) {
			out["key"] = key
		} else {
			out["key_b64"] = []byte(key) // base64
		}
		return a.printJSON(out)
	}
	_, err = fmt.Fprintln(a.stdout, formatTTL(d))
	return err
}

// ttlOf returns how long key's value has left (simdr.NoExpiry for none);
// a missing or expired key is a notFound error.
func ttlOf(s *simdr.Store, key string) (time.Duration, error) {
	d, err := s.TTL([]byte(key))
	switch {
	case errors.Is(err, simdr.ErrNotFound):
		return 0, &notFound{key}
	case err != nil:
		return 0, fmt.Errorf("ttl %q: %w", key, err)
	}
	return d, nil
}

// formatTTL is how ttl prints a remaining time: a Go duration, or
// "no expiry".
func formatTTL(d time.Duration) string {
	if d == simdr.NoExpiry {
		return "no expiry"
	}
	return d.String()
}

// keyField is the JSON member naming key: "key": KEY, or "key_b64" for a
// key that is not UTF-8.
func keyField(key string) string {
	if utf8.ValidString(key) {
		k, _ := json.Marshal(key)
		return `"key":` + string(k)
	}
	return `"key_b64":"` + base64.StdEncoding.EncodeToString([]byte(key)) + `"`
}
