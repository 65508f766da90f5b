package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/simdr-go/simdr"
)

func hashOf(key string) string { return fmt.Sprintf("%016x", simdr.Hash([]byte(key))) }

func TestHas(t *testing.T) {
	f := storePath(t)
	ok(t, f, "write", "k", "v")
	for _, c := range []struct {
		args []string
		code int
	}{
		{[]string{"has", "k"}, 0},
		{[]string{"has", "nope"}, 1},
		{[]string{"has", "--hash", hashOf("k")}, 0},
		{[]string{"has", "--hash", "0x" + hashOf("k")}, 0},
		{[]string{"has", "--hash", hashOf("nope")}, 1},
	} {
		r := simdrRun(t, append([]string{f}, c.args...)...)
		if r.code != c.code || len(r.stdout) != 0 || len(r.stderr) != 0 {
			t.Errorf("simdr %v: %v; want exit %d and nothing printed", c.args, r, c.code)
		}
	}
	ok(t, f, "delete", "k")
	fails(t, 1, f, "has", "k")
	missing := filepath.Join(t.TempDir(), "missing.simdr")
	if r := fails(t, 1, missing, "has", "k"); !strings.Contains(string(r.stderr), "does not exist") {
		t.Errorf("has on a missing file: %v", r)
	}
	mustNotExist(t, missing)
}

// --hash HASH addresses a key by the hash list prints, for read, delete,
// metadata and has.
func TestHashAddressing(t *testing.T) {
	f := storePath(t)
	ok(t, f, "write", "alpha", "AAA")
	ok(t, f, "write", "beta", "BB")
	var list []listJSON
	json.Unmarshal(ok(t, f, "list", "--json").stdout, &list)
	if len(list) != 2 || list[0].KeyHash != hashOf("alpha") {
		t.Fatalf("list: %+v", list)
	}
	h := list[0].KeyHash
	if got := ok(t, f, "read", "--hash", h).stdout; string(got) != "AAA" {
		t.Errorf("read --hash = %q", got)
	}
	var m metadataJSON
	json.Unmarshal(ok(t, f, "metadata", "--hash", h, "--json").stdout, &m)
	if m.KeyHash != h || m.PayloadBytes != 3 || m.Key != nil || m.KeyB64 != "" {
		t.Errorf("metadata --hash: %+v", m)
	}
	if out := string(ok(t, f, "metadata", "--hash", h).stdout); !strings.Contains(out, "ENTRY FOR:                hash "+h) {
		t.Errorf("metadata --hash:\n%s", out)
	}
	r := fails(t, 1, f, "read", "--hash", hashOf("gamma"))
	if !strings.Contains(string(r.stderr), "no key with hash "+hashOf("gamma")) {
		t.Errorf("read --hash of a missing key: %v", r)
	}
	ok(t, f, "delete", "--hash", h)
	fails(t, 1, f, "read", "alpha")
	fails(t, 1, f, "delete", "--hash", h)
	ok(t, f, "delete", "--hash", h, "--force")
	for _, bad := range []string{"abc", "0123456789abcdeg", "0123456789abcdef01", ""} {
		fails(t, 2, f, "read", "--hash", bad)
	}
}

func TestReadSeveralAndOutput(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "s.simdr")
	ok(t, f, "write", "a", "1")
	bin := "line one\nline two\x00\xff"
	if r := simdrIn(t, strings.NewReader(bin), f, "write", "b"); r.code != 0 {
		t.Fatal(r)
	}
	// Framing: a header line ("KEY" SIZE, or - when missing), the value, a newline.
	r := simdrRun(t, f, "read", "a", "missing", "b", "--hash", hashOf("a"))
	want := "\"a\" 1\n1\n\"missing\" -\n\"b\" " + fmt.Sprint(len(bin)) + "\n" + bin + "\n" + hashOf("a") + " 1\n1\n"
	if r.code != 1 || string(r.stdout) != want || !strings.Contains(string(r.stderr), `key "missing" not found`) {
		t.Errorf("read a missing b: %v\nwant stdout %q", r, want)
	}
	if r := ok(t, f, "read", "a", "b"); !bytes.HasPrefix(r.stdout, []byte("\"a\" 1\n1\n\"b\" ")) {
		t.Errorf("read a b: %v", r)
	}
	// --json: base64 values, null when missing.
	r = simdrRun(t, f, "read", "a", "b", "nope", "--json")
	var vals []struct {
		Key   string  `json:"key"`
		Value *string `json:"value_b64"`
	}
	if err := json.Unmarshal(r.stdout, &vals); err != nil || r.code != 1 || len(vals) != 3 {
		t.Fatalf("read --json: %v (%v)", r, err)
	}
	if vals[0].Key != "a" || *vals[0].Value != base64.StdEncoding.EncodeToString([]byte("1")) ||
		*vals[1].Value != base64.StdEncoding.EncodeToString([]byte(bin)) || vals[2].Key != "nope" || vals[2].Value != nil {
		t.Errorf("read --json = %s", r.stdout)
	}
	// --output FILE and -o FILE: the value, nothing on stdout; a missing key creates no file.
	out := filepath.Join(dir, "out.bin")
	if r := ok(t, f, "read", "b", "--output", out); len(r.stdout) != 0 {
		t.Errorf("read --output: %v", r)
	}
	if got, _ := os.ReadFile(out); string(got) != bin {
		t.Errorf("--output file = %q", got)
	}
	out2 := filepath.Join(dir, "out2.bin")
	ok(t, f, "read", "-o", out2, "a", "b")
	if got, _ := os.ReadFile(out2); !bytes.HasPrefix(got, []byte("\"a\" 1\n1\n")) {
		t.Errorf("-o with two keys = %q", got)
	}
	gone := filepath.Join(dir, "gone.bin")
	fails(t, 1, f, "read", "nope", "-o", gone)
	mustNotExist(t, gone)
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.Contains(e.Name(), ".tmp") {
			t.Errorf("temporary file left: %s", e.Name())
		}
	}
}

func TestBatch(t *testing.T) {
	f := storePath(t)
	ok(t, f, "write", "old", "o")
	in := strings.Join([]string{
		`{"op":"put","key":"a","value":"1"}`,
		``,
		`{"op":"put","key_b64":"AAE=","value_b64":"//8="}`,
		`{"op":"put","key":"b","value":"2"}`,
		`{"op":"delete","key":"old"}`,
		`{"op":"delete","key":"b"}`,
	}, "\n") + "\n"
	r := simdrIn(t, strings.NewReader(in), f, "batch")
	if r.code != 0 || !strings.Contains(string(r.stderr), "Applied 5 operations (3 puts, 2 deletes) in one batch") {
		t.Fatalf("batch: %v", r)
	}
	if got := readKey(t, f, "a"); string(got) != "1" {
		t.Errorf("a = %q", got)
	}
	s, err := simdr.Open(f, &simdr.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if e, err := s.Get([]byte{0, 1}); err != nil || !bytes.Equal(e.Bytes(), []byte{0xff, 0xff}) {
		t.Errorf("key_b64 put: %v, %v", e.Bytes(), err)
	}
	s.Close()
	fails(t, 1, f, "read", "old")
	fails(t, 1, f, "read", "b")

	// A malformed line fails the whole batch with its number; nothing is written.
	before, _ := os.ReadFile(f)
	for _, c := range []struct{ line, msg string }{
		{`{"op":"put","key":"x","value":""}`, "value cannot be stored"},
		{`{"op":"put","key":"x","value":"\u0000"}`, "value cannot be stored"},
		{`{"op":"frob","key":"x"}`, `not "frob"`},
		{`{"op":"put","value":"2"}`, "missing key"},
		{`{"op":"put","key":"x"}`, "missing value"},
		{`{"op":"put","key":"x","key_b64":"eA==","value":"2"}`, "both key and key_b64"},
		{`{"op":"delete","key":"a","value":"2"}`, "a delete has no value"},
		{`{"op":"put","key":"x","value":"1","extra":1}`, "unknown field"},
		{`{"op":"put","key":"x","value":"1"} {}`, "more than one JSON value"},
		{`{"op":"put","key_b64":"!!","value":"1"}`, "illegal base64"},
		{`not json`, "invalid character"},
		{`{"op":"put","key":"x","value":"1","ttl_ms":0}`, "ttl must be positive"},
		{`{"op":"put","key":"x","value":"1","ttl_ms":-5}`, "ttl must be positive"},
		{`{"op":"put","key":"x","value":"1","ttl_ms":1.5}`, "ttl_ms"},
		{`{"op":"put","key":"x","value":"1","ttl_ms":1e3}`, "ttl_ms"},
		{`{"op":"put","key":"x","value":"1","ttl_ms":"1000"}`, "ttl_ms"},
		{`{"op":"put","key":"x","value":"1","ttl_ms":99999999999999999999}`, "ttl_ms"},
		{`{"op":"delete","key":"a","ttl_ms":1000}`, "a delete has no ttl_ms"},
		{`{"op":"put","key":"\u0000simdr.ttl\u0000x","value":"1"}`, "reserved prefix"},
		{`{"op":"delete","key_b64":"AHNpbWRyLnR0bAB4"}`, "reserved prefix"},
	} {
		in := `{"op":"put","key":"x1","value":"1","ttl_ms":5}` + "\n" + `{"op":"delete","key":"a"}` + "\n" + c.line + "\n" + `{"op":"put","key":"x2","value":"2"}` + "\n"
		r := simdrIn(t, strings.NewReader(in), f, "batch")
		if r.code != 1 || !strings.Contains(string(r.stderr), "line 3: ") || !strings.Contains(string(r.stderr), c.msg) ||
			!strings.Contains(string(r.stderr), "nothing written") {
			t.Errorf("batch with %s: %v", c.line, r)
		}
		if after, _ := os.ReadFile(f); !bytes.Equal(after, before) {
			t.Errorf("batch with %s changed the file", c.line)
		}
	}

	// --chunk N: batches of N; a bad line stops, the chunks before stay.
	in = ""
	for i := range 5 {
		in += fmt.Sprintf(`{"op":"put","key":"c%d","value":"v%d"}`+"\n", i, i)
	}
	r = simdrIn(t, strings.NewReader(in+`{"op":"bad"}`+"\n"), f, "batch", "--chunk", "2")
	if r.code != 1 || !strings.Contains(string(r.stderr), "line 6") || !strings.Contains(string(r.stderr), "the 4 operations of lines 1-4 stay applied") {
		t.Errorf("batch --chunk with a bad line: %v", r)
	}
	ok(t, f, "has", "c3")
	fails(t, 1, f, "has", "c4")
	r = simdrIn(t, strings.NewReader(in), f, "batch", "--chunk", "2")
	if r.code != 0 || !strings.Contains(string(r.stderr), "Applied 5 operations (5 puts, 0 deletes) in 3 atomic batches") {
		t.Errorf("batch --chunk 2: %v", r)
	}
	ok(t, f, "has", "c4")
}

// An input past one batch's bound (64 MiB of values) fails whole without
// --chunk, and goes through with it.
func TestBatchBound(t *testing.T) {
	f := storePath(t)
	big := strings.Repeat("x", 24<<20)
	var in strings.Builder
	for i := range 3 {
		fmt.Fprintf(&in, `{"op":"put","key":"k%d","value":"%s"}`+"\n", i, big)
	}
	r := simdrIn(t, strings.NewReader(in.String()), f, "batch")
	if r.code != 1 || !strings.Contains(string(r.stderr), "line 3: the input is larger than one atomic batch") ||
		!strings.Contains(string(r.stderr), "--chunk") {
		t.Errorf("batch past the bound: %v", r)
	}
	fails(t, 1, f, "has", "k0")
	r = simdrIn(t, strings.NewReader(in.String()), f, "batch", "--chunk", "1000")
	if r.code != 0 || !strings.Contains(string(r.stderr), "in 2 atomic batches") {
		t.Errorf("batch --chunk past the bound: %v", r)
	}
	ok(t, f, "has", "k2")
}

func TestRepair(t *testing.T) {
	f := storePath(t)
	ok(t, f, "write", "a", "aaaa")
	ok(t, f, "write", "b", "bbbb")
	size := func() int64 { fi, _ := os.Stat(f); return fi.Size() }
	n := size()
	r := ok(t, f, "repair")
	if !strings.Contains(string(r.stdout), "nothing to repair (88 bytes, 2 entries intact)") {
		t.Errorf("repair of a sound file: %v", r)
	}
	var rep repairJSON
	json.Unmarshal(ok(t, f, "repair", "--json").stdout, &rep)
	if rep.Repaired || rep.OldSize != n || rep.NewSize != n || rep.Kept != 2 || len(rep.Dropped) != 0 {
		t.Errorf("repair --json of a sound file: %+v", rep)
	}
	// A garbage tail is dropped.
	fh, _ := os.OpenFile(f, os.O_WRONLY|os.O_APPEND, 0)
	fh.Write([]byte("garbage"))
	fh.Close()
	rep = repairJSON{}
	json.Unmarshal(ok(t, f, "repair", "--json").stdout, &rep)
	if !rep.Repaired || rep.OldSize != n+7 || rep.NewSize != n || len(rep.Dropped) != 1 || rep.Dropped[0] != (simdr.Range{Off: n, Len: 7}) {
		t.Errorf("repair --json of a garbage tail: %+v", rep)
	}
	// A file with no valid chain, which Open refuses, opens after repair.
	g := storePath(t)
	os.WriteFile(g, bytes.Repeat([]byte{0xAB}, 100), 0o644)
	fails(t, 1, g, "info")
	r = ok(t, g, "repair")
	if !strings.Contains(string(r.stdout), "repaired: 100 bytes -> ") || !strings.Contains(string(r.stdout), "DROPPED") {
		t.Errorf("repair of garbage: %v", r)
	}
	ok(t, g, "info")
	ok(t, g, "verify")
	fails(t, 1, filepath.Join(t.TempDir(), "missing"), "repair")
}

func TestShellPiped(t *testing.T) {
	f := storePath(t)
	in := "put k v\nget k\nput \"a b\" \"x\\ty\"\nget 'a b'\nhas k\nhas zz\nget zz\nbogus\n# a comment\n\ndelete k\nhas k\ninfo\nlist\nhelp\n"
	r := simdrIn(t, strings.NewReader(in), f, "shell")
	out := string(r.stdout)
	if r.code != 1 || !strings.HasPrefix(out, "v\nx\ty\ntrue\nfalse\nfalse\n") ||
		!strings.Contains(out, "STORAGE INFO") || !strings.Contains(out, "KEY HASH") || !strings.Contains(out, "put KEY VALUE") {
		t.Errorf("shell: %v\n%s", r, out)
	}
	if !strings.Contains(string(r.stderr), `line 7: key "zz" not found`) || !strings.Contains(string(r.stderr), `line 8: unknown command "bogus"`) {
		t.Errorf("shell errors: %q", r.stderr)
	}
	if got := readKey(t, f, "a b"); string(got) != "x\ty" {
		t.Errorf(`"a b" = %q`, got)
	}
	// No error: exit 0; exit stops reading.
	r = simdrIn(t, strings.NewReader("put x 1\nexit\nput y 2\n"), f, "shell")
	if r.code != 0 {
		t.Errorf("shell: %v", r)
	}
	fails(t, 1, f, "has", "y")
}

// The shell on a real terminal, under tmux: typed keys, line editing, the
// history (Up), and the screen as a person sees it.
// tmuxServer returns a function running tmux commands on a tmux server of
// the test's own, and its socket name (after the test's temporary
// directory, whose last element, "001", every test shares); the server is
// killed when the test ends.
func tmuxServer(t *testing.T) (tmux func(args ...string) string, sock string) {
	sock = "simdr-test-" + filepath.Base(filepath.Dir(t.TempDir()))
	t.Cleanup(func() { exec.Command("tmux", "-L", sock, "kill-server").Run() })
	return func(args ...string) string {
		t.Helper()
		out, err := exec.Command("tmux", append([]string{"-L", sock}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("tmux %v: %v %s", args, err, out)
		}
		return string(out)
	}, sock
}

func TestShellTmux(t *testing.T) {
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Skip("tmux not installed")
	}
	dir := t.TempDir()
	f := filepath.Join(dir, "s.simdr")
	hist := filepath.Join(dir, "history")
	tmux, sock := tmuxServer(t)
	tmux("new-session", "-d", "-s", "t", "-x", "100", "-y", "30", "env", "SIMDR_HISTORY="+hist, bin, f, "shell")
	// waitFor polls the screen until it holds want (no timing assert: a
	// generous deadline only turns a hang into a failure).
	waitFor := func(want string) string {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			screen := tmux("capture-pane", "-p", "-t", "t")
			if strings.Contains(screen, want) {
				return screen
			}
			if time.Now().After(deadline) {
				t.Fatalf("the screen never showed %q:\n%s", want, screen)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitFor("simdr>")
	tmux("send-keys", "-t", "t", "put greeting hello", "Enter")
	// A typo fixed with Backspace; then Ctrl-A and arrows to edit mid-line.
	tmux("send-keys", "-t", "t", "get greetinX", "BSpace", "g", "Enter")
	waitFor("simdr> get greeting\nhello\nsimdr>")
	tmux("send-keys", "-t", "t", "hes greeting", "C-a", "Right", "Right", "BSpace", "a", "Enter")
	waitFor("simdr> has greeting\ntrue\n")
	// Up recalls the last line.
	tmux("send-keys", "-t", "t", "Up", "Up", "Enter")
	screen := waitFor("hello\nsimdr> has greeting\ntrue\nsimdr> get greeting\nhello\n")
	if strings.Contains(screen, "error") {
		t.Errorf("screen:\n%s", screen)
	}
	tmux("send-keys", "-t", "t", "C-d")
	// The store stayed open and the writes are in it; the history is saved.
	deadline := time.Now().Add(20 * time.Second)
	for exec.Command("tmux", "-L", sock, "has-session", "-t", "t").Run() == nil && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if got := readKey(t, f, "greeting"); string(got) != "hello" {
		t.Errorf("greeting = %q", got)
	}
	if h, _ := os.ReadFile(hist); !strings.Contains(string(h), "put greeting hello\n") {
		t.Errorf("history file: %q", h)
	}
	if fi, err := os.Stat(hist); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("history file mode: %v, %v", fi.Mode(), err)
	}
}

func TestSplitWords(t *testing.T) {
	for _, c := range []struct {
		line string
		want []string
		bad  bool
	}{
		{"get k", []string{"get", "k"}, false},
		{"  put   k  v  \n", []string{"put", "k", "v"}, false},
		{`put "a b" 'c d'`, []string{"put", "a b", "c d"}, false},
		{`put k "x\ty\x00\n"`, []string{"put", "k", "x\ty\x00\n"}, false},
		{`put k "say \"hi\""`, []string{"put", "k", `say "hi"`}, false},
		{`put k 'it''s'`, []string{"put", "k", "its"}, false},
		{`put pre"mid"post x`, []string{"put", "premidpost", "x"}, false},
		{`put k ""`, []string{"put", "k", ""}, false},
		{"put k héllo", []string{"put", "k", "héllo"}, false},
		{"", nil, false},
		{`put "k`, nil, true},
		{`put 'k`, nil, true},
		{`put "k\`, nil, true},
		{`put "\q"`, nil, true},
	} {
		got, err := splitWords(c.line)
		if (err != nil) != c.bad || (!c.bad && fmt.Sprintf("%q", got) != fmt.Sprintf("%q", c.want)) {
			t.Errorf("splitWords(%q) = %q, %v; want %q (error: %v)", c.line, got, err, c.want, c.bad)
		}
	}
}

func TestParseHashAndPlural(t *testing.T) {
	for _, c := range []struct {
		in   string
		want uint64
		bad  bool
	}{
		{"f01e5cbbc09d4fc4", 0xf01e5cbbc09d4fc4, false},
		{"0xF01E5CBBC09D4FC4", 0xf01e5cbbc09d4fc4, false},
		{"0000000000000000", 0, false},
		{"f01e5cbbc09d4fc", 0, true},
		{"f01e5cbbc09d4fc44", 0, true},
		{"g01e5cbbc09d4fc4", 0, true},
		{"-01e5cbbc09d4fc4", 0, true},
		{"", 0, true},
	} {
		got, err := parseHash(c.in)
		if (err != nil) != c.bad || got != c.want {
			t.Errorf("parseHash(%q) = %x, %v", c.in, got, err)
		}
	}
	for _, c := range []struct {
		n          int64
		noun, want string
	}{
		{1, "byte", "1 byte"}, {0, "byte", "0 bytes"}, {2, "file", "2 files"},
		{1, "entry", "1 entry"}, {3, "entry", "3 entries"}, {2, "key", "2 keys"},
		{2, "atomic batch", "2 atomic batches"}, {1, "atomic batch", "1 atomic batch"},
	} {
		if got := countUnit(c.n, c.noun); got != c.want {
			t.Errorf("countUnit(%d, %q) = %q, want %q", c.n, c.noun, got, c.want)
		}
	}
}
