package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/simdr-go/simdr"
)

// ttlOut runs "FILE ttl KEY" and parses the remaining time it prints.
func ttlOut(t *testing.T, f, key string) time.Duration {
	t.Helper()
	out := strings.TrimSpace(string(ok(t, f, "ttl", key).stdout))
	d, err := time.ParseDuration(out)
	if err != nil {
		t.Fatalf("ttl %s printed %q: %v", key, out, err)
	}
	return d
}

// writeExpired stores key=value in f through the library on a clock an hour
// behind, with a ttl of a minute: by the real clock, which the binary uses,
// it expired 59 minutes ago.
func writeExpired(t *testing.T, f string, kv ...string) {
	t.Helper()
	s, err := simdr.Open(f, &simdr.Options{Clock: func() time.Time { return time.Now().Add(-time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(kv); i += 2 {
		if err := s.PutTTL([]byte(kv[i]), []byte(kv[i+1]), time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// write --ttl, from an argument and from stdin; ttl reports the time left,
// "no expiry", and a missing key as read does.
func TestWriteTTL(t *testing.T) {
	f := storePath(t)
	r := ok(t, f, "write", "session", "token", "--ttl", "10m")
	if !strings.Contains(string(r.stderr), `Stored "session" (5 bytes, expires in 10m0s)`) {
		t.Errorf("write --ttl: %v", r)
	}
	if d := ttlOut(t, f, "session"); d <= 0 || d > 10*time.Minute {
		t.Errorf("ttl after write --ttl 10m = %v", d)
	}
	if got := readKey(t, f, "session"); string(got) != "token" {
		t.Errorf("read = %q", got)
	}
	ok(t, f, "has", "session")

	ok(t, f, "write", "plain", "v")
	if out := ok(t, f, "ttl", "plain").stdout; string(out) != "no expiry\n" {
		t.Errorf("ttl of a value without expiry = %q", out)
	}
	r = fails(t, 1, f, "ttl", "missing")
	if !strings.Contains(string(r.stderr), `key "missing" not found`) || len(r.stdout) != 0 {
		t.Errorf("ttl of a missing key: %v", r)
	}

	// --json: ttl_ms, null for no expiry.
	var j struct {
		Key   string `json:"key"`
		TTLms *int64 `json:"ttl_ms"`
	}
	if err := json.Unmarshal(ok(t, f, "ttl", "session", "--json").stdout, &j); err != nil || j.Key != "session" ||
		j.TTLms == nil || *j.TTLms <= 0 || *j.TTLms > 600000 {
		t.Errorf("ttl --json: %+v %v", j, err)
	}
	j.TTLms = new(int64)
	if err := json.Unmarshal(ok(t, f, "--json", "ttl", "plain").stdout, &j); err != nil || j.Key != "plain" || j.TTLms != nil {
		t.Errorf("ttl --json of a value without expiry: %+v %v", j, err)
	}

	// A write without --ttl replaces the expiry with none; with, sets one.
	ok(t, f, "write", "session", "again")
	if out := ok(t, f, "ttl", "session").stdout; string(out) != "no expiry\n" {
		t.Errorf("ttl after a write without --ttl = %q", out)
	}
	ok(t, f, "write", "plain", "v2", "--ttl=1h")
	if d := ttlOut(t, f, "plain"); d <= 10*time.Minute || d > time.Hour {
		t.Errorf("ttl after write --ttl=1h = %v", d)
	}

	// From stdin: spooled, stored whole, the spool gone.
	dir := filepath.Dir(f)
	names := func() []string {
		es, _ := os.ReadDir(dir)
		var out []string
		for _, e := range es {
			out = append(out, e.Name())
		}
		return out
	}
	before := names()
	big := bytes.Repeat([]byte("0123456789abcdef"), 3<<16) // 3 MiB
	r = simdrIn(t, bytes.NewReader(big), f, "write", "big", "--ttl", "90s")
	if r.code != 0 || !strings.Contains(string(r.stderr), "expires in 1m30s") {
		t.Fatalf("write --ttl from stdin: %v", r)
	}
	if got := readKey(t, f, "big"); !bytes.Equal(got, big) {
		t.Errorf("big read back as %d bytes, not the %d written", len(got), len(big))
	}
	if d := ttlOut(t, f, "big"); d <= 0 || d > 90*time.Second {
		t.Errorf("ttl of big = %v", d)
	}
	if after := names(); !slices.Equal(after, before) {
		t.Errorf("write --ttl from stdin left %v in the directory (before: %v)", after, before)
	}
	r = simdrIn(t, strings.NewReader(""), f, "write", "empty", "--ttl", "1m")
	if r.code != 1 || !strings.Contains(string(r.stderr), "stdin is empty") {
		t.Errorf("write --ttl with an empty stdin: %v", r)
	}
	r = simdrIn(t, bytes.NewReader([]byte{0}), f, "write", "zero", "--ttl", "1m")
	if r.code != 1 || !strings.Contains(string(r.stderr), "cannot be stored") {
		t.Errorf("write --ttl with 0x00 on stdin: %v", r)
	}
	fails(t, 1, f, "has", "empty")
	fails(t, 1, f, "has", "zero")
}

// A --ttl that is not a positive Go duration, and ttl without one KEY, are
// usage errors that write nothing.
func TestTTLUsage(t *testing.T) {
	f := storePath(t)
	ok(t, f, "write", "k", "v")
	before, _ := os.ReadFile(f)
	for _, c := range []struct {
		args []string
		msg  string
	}{
		{[]string{"write", "k", "x", "--ttl", "0"}, "must be positive"},
		{[]string{"write", "k", "x", "--ttl", "-1s"}, "must be positive"},
		{[]string{"write", "k", "x", "--ttl", "5"}, "missing unit"},
		{[]string{"write", "k", "x", "--ttl", "soon"}, "Go duration"},
		{[]string{"write", "k", "x", "--ttl"}, "needs a value"},
		{[]string{"ttl"}, "wrong number of arguments"},
		{[]string{"ttl", "a", "b"}, "wrong number of arguments"},
		{[]string{"ttl", "--hash", hashOf("k")}, "--hash"},
		{[]string{"read", "k", "--ttl", "1m"}, "--ttl"},
	} {
		r := fails(t, 2, append([]string{f}, c.args...)...)
		if !strings.Contains(string(r.stderr), c.msg) {
			t.Errorf("%q: %v, want %q", c.args, r, c.msg)
		}
	}
	if after, _ := os.ReadFile(f); !bytes.Equal(after, before) {
		t.Error("a usage error changed the file")
	}
	if out := ok(t, "help", "ttl").stdout; !strings.Contains(string(out), "no expiry") {
		t.Errorf("help ttl: %s", out)
	}
	if out := ok(t, "--help").stdout; !strings.Contains(string(out), "ttl ") {
		t.Errorf("--help does not list ttl: %s", out)
	}
}

// An expired key reads as missing to every command, with read's exit codes.
func TestExpiredKey(t *testing.T) {
	f := storePath(t)
	ok(t, f, "write", "live", "v")
	writeExpired(t, f, "gone", "old value")
	for _, args := range [][]string{{"read", "gone"}, {"ttl", "gone"}, {"metadata", "gone"}, {"delete", "gone"}} {
		r := fails(t, 1, append([]string{f}, args...)...)
		if !strings.Contains(string(r.stderr), `key "gone" not found`) {
			t.Errorf("%s of an expired key: %v", args[0], r)
		}
	}
	r := fails(t, 1, f, "has", "gone")
	if len(r.stdout)+len(r.stderr) != 0 {
		t.Errorf("has of an expired key: %v", r)
	}
	var info infoJSON
	json.Unmarshal(ok(t, f, "--json", "info").stdout, &info)
	if info.LiveKeys != 1 {
		t.Errorf("info counts %d live keys, want 1 (the expired one hidden)", info.LiveKeys)
	}
	var list []listJSON
	json.Unmarshal(ok(t, f, "--json", "list").stdout, &list)
	if len(list) != 1 || list[0].KeyHash != hashOf("live") {
		t.Errorf("list shows %+v, want only live", list)
	}
	// Written again, it lives.
	ok(t, f, "write", "gone", "new")
	if got := readKey(t, f, "gone"); string(got) != "new" {
		t.Errorf("gone written again = %q", got)
	}
}

// Interrupted while its stdin is spooled, write --ttl stores nothing.
func TestWriteTTLInterrupted(t *testing.T) {
	f := storePath(t)
	ok(t, f, "write", "k", "old")
	before, _ := os.ReadFile(f)
	stderr := interrupted(t, 1<<20, f, "write", "k", "--ttl", "1h")
	if !strings.Contains(stderr, "interrupted") || !strings.Contains(stderr, "nothing stored") {
		t.Errorf("stderr %q", stderr)
	}
	if after, _ := os.ReadFile(f); !bytes.Equal(after, before) {
		t.Error("an interrupted write --ttl changed the file")
	}
	if out := ok(t, f, "ttl", "k").stdout; string(out) != "no expiry\n" {
		t.Errorf("ttl k = %q", out)
	}
}

// batch takes ttl_ms on a put: a positive integer of milliseconds.
func TestBatchTTL(t *testing.T) {
	f := storePath(t)
	in := `{"op":"put","key":"a","value":"1","ttl_ms":600000}` + "\n" +
		`{"op":"put","key":"b","value":"2","ttl_ms":null}` + "\n" +
		`{"op":"put","key":"c","value":"3","ttl_ms":9223372036854775807}` + "\n"
	r := simdrIn(t, strings.NewReader(in), f, "batch")
	if r.code != 0 || !strings.Contains(string(r.stderr), "Applied 3 operations (3 puts, 0 deletes)") {
		t.Fatalf("batch with ttl_ms: %v", r)
	}
	if d := ttlOut(t, f, "a"); d <= 0 || d > 10*time.Minute {
		t.Errorf("ttl a = %v", d)
	}
	if out := ok(t, f, "ttl", "b").stdout; string(out) != "no expiry\n" {
		t.Errorf("ttl b (ttl_ms null) = %q", out)
	}
	if d := ttlOut(t, f, "c"); d < 100*365*24*time.Hour {
		t.Errorf("ttl c (the largest ttl_ms) = %v", d)
	}
	// A bad ttl_ms fails the whole batch: see TestBatch.
}

// The batch's reserved prefix is the library's.
func TestReservedPrefixIsTheLibrarys(t *testing.T) {
	s, err := simdr.Open(storePath(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Put([]byte(reservedPrefix+"x"), []byte("v")); !errors.Is(err, simdr.ErrReservedKey) {
		t.Errorf("Put under reservedPrefix: %v, want ErrReservedKey", err)
	}
	if err := s.Put([]byte(reservedPrefix[:len(reservedPrefix)-1]), []byte("v")); err != nil {
		t.Errorf("Put under a shorter prefix: %v", err)
	}
}

// The shell's put --ttl and ttl.
func TestShellTTL(t *testing.T) {
	f := storePath(t)
	writeExpired(t, f, "gone", "v")
	in := "put k v --ttl 10m\nttl k\nput n v\nttl n\nttl missing\nput k v --ttl 0\nput k v --ttl\nttl gone\nhas gone\n" +
		"put \"\\x00simdr.ttl\\x00a\" v\nget k\n"
	r := simdrIn(t, strings.NewReader(in), f, "shell")
	lines := strings.Split(string(r.stdout), "\n")
	if r.code != 1 || len(lines) != 5 || lines[1] != "no expiry" || lines[2] != "false" || lines[3] != "v" {
		t.Fatalf("shell: %v", r)
	}
	if d, err := time.ParseDuration(lines[0]); err != nil || d <= 0 || d > 10*time.Minute {
		t.Errorf("shell ttl k printed %q", lines[0])
	}
	for _, want := range []string{
		`line 5: key "missing" not found`,
		`line 6: --ttl "0": a ttl must be positive`,
		`line 7: usage: put KEY VALUE [--ttl DURATION]`,
		`line 8: key "gone" not found`,
		`line 10: put "\x00simdr.ttl\x00a": put: key uses the reserved prefix`,
	} {
		if !strings.Contains(string(r.stderr), want) {
			t.Errorf("shell stderr %q lacks %q", r.stderr, want)
		}
	}
}
