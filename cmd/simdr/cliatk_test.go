//go:build linux

package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/simdr-go/simdr"
)

// TestNoWriteOverTheStore: read --output and export --force refuse to write
// over the store file they read (by its name, a symbolic link or a hard
// link to it) and over the state file beside it, which would replace the
// store with a value (read) or truncate it under its own mapping (export);
// import does not read them into the store.
func TestNoWriteOverTheStore(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "s.simdr")
	big := strings.Repeat("0123456789", 10_000)
	simdrIn(t, strings.NewReader(big), path, "write", "s.simdr")
	ok(t, path, "write", "s.simdr-simdr-shm", "v")
	ok(t, path, "write", "other", "hello")
	ok(t, path, "write", "link", "l")
	ok(t, path, "write", "hard", "h")
	if err := os.Symlink("s.simdr", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(path, filepath.Join(dir, "hard")); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, out := range []string{path, filepath.Join(dir, "link"), filepath.Join(dir, "hard"), path + "-simdr-shm"} {
		r := fails(t, 1, path, "read", "other", "-o", out)
		if !strings.Contains(string(r.stderr), "is the store file") {
			t.Errorf("read -o %s: %v; want it refused as the store file", out, r)
		}
	}
	for _, keys := range []string{"s.simdr\n", "link\n", "hard\n", "s.simdr-simdr-shm\n", "other\ns.simdr\n"} {
		r := simdrIn(t, strings.NewReader(keys), path, "export", dir, "--keys-from", "-", "--force")
		if r.code != 1 || !strings.Contains(string(r.stderr), "is the store file") {
			t.Errorf("export --force of %q into the store's directory: %v; want it refused", keys, r)
		}
	}
	after, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Fatalf("the store file changed: %d bytes -> %d", len(before), len(after))
	}
	if got := readKey(t, path, "s.simdr"); string(got) != big {
		t.Fatalf("the value read back is %d bytes, want %d", len(got), len(big))
	}
	ok(t, path, "verify")

	// import of the store's directory takes neither the store nor its
	// state file, under any name.
	os.Remove(filepath.Join(dir, "hard"))
	if err := os.WriteFile(filepath.Join(dir, "a.txt"), []byte("a"), 0o644); err != nil {
		t.Fatal(err)
	}
	ok(t, path, "import", dir)
	if got, want := string(readKey(t, path, manifestName)), manifestHeader+"\n\"a.txt\"\n"; got != want {
		t.Fatalf("import of the store's own directory: manifest %q; want only a.txt", got)
	}
}

// TestOutputErrorsFail: a report that cannot be written to stdout (a full
// disk) fails the command with exit 1 and says so on stderr, whatever the
// command: none may exit 0 having written nothing.
func TestOutputErrorsFail(t *testing.T) {
	full, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
	if err != nil {
		t.Skipf("no /dev/full: %v", err)
	}
	defer full.Close()
	path := storePath(t)
	ok(t, path, "write", "k", "v")
	cases := []struct {
		stdin string
		args  []string
	}{
		{"", []string{path, "read", "k"}},
		{"", []string{path, "read", "k", "k"}},
		{"", []string{path, "info"}},
		{"", []string{path, "info", "--json"}},
		{"", []string{path, "metadata", "k"}},
		{"", []string{path, "metadata", "k", "--json"}},
		{"", []string{path, "verify"}},
		{"", []string{path, "verify", "--json"}},
		{"", []string{path, "list"}},
		{"", []string{path, "ttl", "k"}},
		{"", []string{path, "repair"}},
		{"", []string{path, "repair", "--json"}},
		{"", []string{path, "backup", path + ".bak", "--json"}},
		{"", []string{"--help"}},
		{"", []string{"help", "read"}},
		{"", []string{"--version"}},
		{"info\n", []string{path, "shell"}},
		{"list\n", []string{path, "shell"}},
		{"help\n", []string{path, "shell"}},
	}
	for _, c := range cases {
		cmd := exec.Command(bin, c.args...)
		var errb bytes.Buffer
		cmd.Stdin, cmd.Stdout, cmd.Stderr = strings.NewReader(c.stdin), full, &errb
		err := cmd.Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 {
			t.Errorf("simdr %q > /dev/full: %v, stderr %q; want exit 1", c.args, err, errb.String())
			continue
		}
		if !strings.Contains(errb.String(), "no space left on device") {
			t.Errorf("simdr %q > /dev/full: stderr %q does not say why", c.args, errb.String())
		}
	}
}

// TestListNames: list names an imported file called "(import manifest)" as
// the file it is, not as the manifest, and list --json gives a key that is
// not UTF-8 as key_b64, byte for byte (not with U+FFFD in its place).
func TestListNames(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{"(import manifest)": "a", "\xff\xfe": "b"})
	path := storePath(t)
	ok(t, path, "import", dir)
	out := string(ok(t, path, "list").stdout)
	if !strings.Contains(out, `"(import manifest)"`) || strings.Count(out, manifestLabel) != 2 || !strings.Contains(out, `"\xff\xfe"`) {
		t.Errorf("list:\n%s\nwant the file \"(import manifest)\" quoted, the manifest once unquoted, \"\\xff\\xfe\"", out)
	}
	var ents []listJSON
	if err := json.Unmarshal(ok(t, path, "list", "--json").stdout, &ents); err != nil {
		t.Fatal(err)
	}
	var manifests int
	var keys []string
	for _, e := range ents {
		if e.Manifest {
			manifests++
			if e.Key != "" || e.KeyB64 != nil {
				t.Errorf("the manifest is listed with a key: %+v", e)
			}
		}
		keys = append(keys, e.Key+"|"+string(e.KeyB64))
	}
	if manifests != 1 || len(ents) != 3 {
		t.Errorf("list --json: %+v; want 3 entries, one of them the manifest", ents)
	}
	if !strings.Contains(strings.Join(keys, ","), "(import manifest)|") || !strings.Contains(strings.Join(keys, ","), "|\xff\xfe") {
		t.Errorf("list --json keys %q; want \"(import manifest)\" as key and \\xff\\xfe as key_b64", keys)
	}
}

// TestTargetNotReplaced: copy, move and backup refuse a target that is not
// a regular file (backup renamed its copy over it: "backup /dev/null" made
// /dev/null a regular file; a FIFO here, as the same rename would replace
// it) or that is the store's state file, and leave it as it was; backup's
// record is replaced, not written through a symbolic link planted in its
// place.
func TestTargetNotReplaced(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "s.simdr")
	ok(t, path, "write", "k", "v")
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	shm := path + "-simdr-shm"
	shm0, err := os.ReadFile(shm)
	if err != nil {
		t.Fatal(err)
	}
	for _, target := range []string{fifo, dir, shm} {
		for _, cmd := range [][]string{{"backup", target}, {"copy", "k", target}, {"move", "k", target}} {
			r := fails(t, 1, append([]string{path}, cmd...)...)
			if !strings.Contains(string(r.stderr), target) {
				t.Errorf("%q: %v; want the target named", cmd, r)
			}
		}
	}
	if fi, err := os.Lstat(fifo); err != nil || fi.Mode()&os.ModeNamedPipe == 0 {
		t.Fatalf("the FIFO was replaced: %v %v", fi.Mode(), err)
	}
	if b, err := os.ReadFile(shm); err != nil || !bytes.Equal(b, shm0) {
		t.Fatalf("the state file was changed (%v)", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 3 {
		t.Errorf("files left behind in %s: %v", dir, entries)
	}
	ok(t, path, "has", "k")

	victim := filepath.Join(dir, "victim")
	if err := os.WriteFile(victim, []byte("precious"), 0o644); err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(dir, "b.simdr")
	if err := os.Symlink(victim, dest+"-simdr-backup"); err != nil {
		t.Fatal(err)
	}
	ok(t, path, "backup", dest)
	if b, _ := os.ReadFile(victim); string(b) != "precious" {
		t.Fatalf("backup wrote its record through the symbolic link: victim holds %q", b)
	}
}

// TestLibraryBackupFileNonRegular: Store.BackupFile (root package) renames
// its copy over a DEST that is a FIFO or a device, replacing it with a
// regular file (and with a prev record, opens it first, which blocks on a
// FIFO). simdr backup refuses such a DEST itself (TestTargetNotReplaced).
func TestLibraryBackupFileNonRegular(t *testing.T) {
	dir := t.TempDir()
	s, err := simdr.Open(filepath.Join(dir, "s.simdr"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Put([]byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	if _, err := s.BackupFile(fifo, nil); err == nil {
		t.Error("BackupFile onto a FIFO succeeded")
	}
	if fi, err := os.Lstat(fifo); err != nil || fi.Mode()&os.ModeNamedPipe == 0 {
		t.Fatalf("BackupFile replaced the FIFO: %v %v", fi.Mode(), err)
	}
}

// TestReadOutputMode: read --output over an existing file keeps its
// permissions (it made a 0600 file 0644, readable by all), and a new file
// gets 0666 less the umask (it got 0644 whatever the umask).
func TestReadOutputMode(t *testing.T) {
	path := storePath(t)
	ok(t, path, "write", "k", "secret")
	dir := t.TempDir()
	old := filepath.Join(dir, "old")
	if err := os.WriteFile(old, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	ok(t, path, "read", "k", "-o", old)
	created := filepath.Join(dir, "new")
	out, err := exec.Command("sh", "-c", `umask 077 && exec "$0" "$@"`, bin, path, "read", "k", "-o", created).CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	for _, p := range []string{old, created} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(p); string(b) != "secret" {
			t.Errorf("%s holds %q", p, b)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v; want 0600", p, fi.Mode().Perm())
		}
	}
}

// TestReadShellLine: the shell's line reader keeps lines up to its bound
// whole and drops a longer one to its end, then goes on with the next line.
func TestReadShellLine(t *testing.T) {
	type got struct {
		line    string
		tooLong bool
		eof     bool
	}
	cases := []struct {
		in   string
		max  int
		want []got
	}{
		{"ab\ncd", 3, []got{{"ab\n", false, false}, {"cd", false, true}}},
		{"abc\nd\n", 4, []got{{"abc\n", false, false}, {"d\n", false, false}, {"", false, true}}},
		{"abcd\nd\n", 4, []got{{"", true, false}, {"d\n", false, false}, {"", false, true}}},
		{"abcdefgh", 4, []got{{"", true, true}}},
		{strings.Repeat("x", 100) + "\nok\n", 20, []got{{"", true, false}, {"ok\n", false, false}, {"", false, true}}},
	}
	for _, c := range cases {
		br := bufio.NewReaderSize(strings.NewReader(c.in), 16)
		for i, w := range c.want {
			line, err := readShellLine(br, c.max)
			g := got{line, errors.Is(err, errLineTooLong), errors.Is(err, io.EOF) || (w.tooLong && w.eof && err != nil && strings.Contains(err.Error(), "end of input"))}
			if g != w {
				t.Errorf("%q (max %d), line %d: %q, %v; want %+v", c.in, c.max, i+1, line, err, w)
			}
		}
	}
}

// TestShellHugeLine: a piped line past the shell's bound (256 MiB) is
// reported and skipped in bounded memory, and the shell goes on (it held
// the whole line, three times, and stored it).
func TestShellHugeLine(t *testing.T) {
	path := storePath(t)
	in := io.MultiReader(strings.NewReader("put big "), &xReader{shellMaxLine}, strings.NewReader("\nput ok v\nhas big\n"))
	r := simdrIn(t, in, path, "shell")
	if r.code != 1 || !strings.Contains(string(r.stderr), "line 1: line longer than") || string(r.stdout) != "false\n" {
		t.Fatalf("%v; want line 1 refused as too long, and the shell to go on", r)
	}
	ok(t, path, "has", "ok")
}

var xs = bytes.Repeat([]byte("x"), 64<<10)

// xReader yields n bytes 'x' (no newline).
type xReader struct{ n int }

func (x *xReader) Read(b []byte) (int, error) {
	if x.n == 0 {
		return 0, io.EOF
	}
	m := copy(b[:min(len(b), x.n)], xs)
	x.n -= m
	return m, nil
}

// TestImportOneRechecks: import checks a file again once it has it open, so
// that one replaced since the walk (in a directory others can write) by a
// device, a directory or a FIFO is reported as not imported, rather than
// read (a link to /dev/zero fed endless zeros into the store; a FIFO
// blocked the open).
func TestImportOneRechecks(t *testing.T) {
	dir := t.TempDir()
	s, err := simdr.Open(filepath.Join(dir, "s.simdr"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "null")
	if err := os.Symlink(os.DevNull, link); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{link, t.TempDir(), fifo} {
		_, err := importOne(t.Context(), s, []byte(p), p, &progress{})
		if !errors.As(err, new(*openFileError)) || !strings.Contains(err.Error(), "no longer a regular file") {
			t.Errorf("importOne(%s): %v; want it refused as not a regular file", p, err)
		}
		if s.Has([]byte(p)) {
			t.Errorf("%s was stored", p)
		}
	}
}

// TestShellReadOnlyFollows: a shell opened read-only beside a writer (here
// the test, holding the lock) sees what the writer commits after it opened,
// command by command (it answered from the moment it opened, and info took
// the new entries for a torn tail).
func TestShellReadOnlyFollows(t *testing.T) {
	path := storePath(t)
	ok(t, path, "write", "k", "v1")
	w, err := simdr.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	cmd := exec.Command(bin, path, "shell")
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	outp, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	out := bufio.NewReader(outp)
	ask := func(line string) string {
		t.Helper()
		if _, err := io.WriteString(in, line+"\n"); err != nil {
			t.Fatal(err)
		}
		got, err := out.ReadString('\n')
		if err != nil {
			t.Fatalf("%s: %v (stderr %q)", line, err, errb.String())
		}
		return got
	}
	if got := ask("get k"); got != "v1\n" {
		t.Fatalf("get k: %q", got)
	}
	if err := w.Put([]byte("k"), []byte("v2")); err != nil {
		t.Fatal(err)
	}
	if err := w.Put([]byte("new"), []byte("n")); err != nil {
		t.Fatal(err)
	}
	if got := ask("get k"); got != "v2\n" {
		t.Errorf("get k after the writer's put: %q; want v2", got)
	}
	if got := ask("has new"); got != "true\n" {
		t.Errorf("has new: %q; want true", got)
	}
	in.Close()
	io.Copy(io.Discard, out)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("%v, stderr %q", err, errb.String())
	}
	if !strings.Contains(errb.String(), "opened read-only") {
		t.Errorf("stderr %q: the shell was not read-only", errb.String())
	}
}

// TestParseOpTrailing: a batch line is one JSON object and nothing but
// spaces after it; a stray "}" or "]" (which json.Decoder.More does not
// count as a value) fails the line like any other trailing text.
func TestParseOpTrailing(t *testing.T) {
	const obj = `{"op":"put","key":"k","value":"v"}`
	cases := []struct {
		line string
		ok   bool
	}{
		{obj, true},
		{obj + "  \t", true},
		{"  " + obj, true},
		{obj + "}", false},
		{obj + "]]]", false},
		{obj + " }", false},
		{obj + ",", false},
		{obj + ":", false},
		{obj + " x", false},
		{obj + "{}", false},
	}
	for _, c := range cases {
		_, err := parseOp([]byte(c.line))
		if (err == nil) != c.ok {
			t.Errorf("parseOp(%q): %v; want ok %v", c.line, err, c.ok)
		}
	}
}

// TestNegativeLockTimeout: a negative --lock-timeout is a usage error (it
// was taken for 0, no wait).
func TestNegativeLockTimeout(t *testing.T) {
	path := storePath(t)
	fails(t, exitUsage, path, "write", "k", "v", "--lock-timeout", "-1s")
	mustNotExist(t, path)
}

// TestMetadataJSONKey: metadata --json names a key that is not UTF-8 as
// key_b64, byte for byte (it gave "\ufffd"), and the empty key as "key": ""
// (it left the key out, as for --hash).
func TestMetadataJSONKey(t *testing.T) {
	path := storePath(t)
	cases := []struct{ key, json string }{
		{"\xff\xfe", `"key_b64": "//4="`},
		{"", `"key": ""`},
		{"é", `"key": "é"`},
	}
	for _, c := range cases {
		ok(t, path, "write", c.key, "v")
		if out := string(ok(t, path, "metadata", c.key, "--json").stdout); !strings.Contains(out, c.json+",\n") {
			t.Errorf("metadata %q --json:\n%s\nwant %s", c.key, out, c.json)
		}
	}
}

// TestExportWholeOrNothing: a file export cannot write whole (here past
// the file size limit, as on a full disk) is not left under its name, part
// written: a new one is absent, an old one (--force) keeps its content, and
// no temporary file stays behind.
func TestExportWholeOrNothing(t *testing.T) {
	src := t.TempDir()
	big := strings.Repeat("0123456789abcdef", 20_000) // 320,000 bytes
	writeTree(t, src, map[string]string{"a": "small", "big": big})
	path := storePath(t)
	ok(t, path, "import", src)
	out := t.TempDir()
	limited := func(args ...string) {
		t.Helper()
		// ulimit -f counts 1024-byte blocks; Go ignores SIGXFSZ, so the
		// write fails with EFBIG.
		c := exec.Command("sh", append([]string{"-c", `ulimit -f 100 && exec "$0" "$@"`, bin, path, "export", out}, args...)...)
		b, err := c.CombinedOutput()
		if err == nil || !strings.Contains(string(b), "file too large") {
			t.Fatalf("export past the file size limit: %v, %s", err, b)
		}
	}
	names := func() []string {
		t.Helper()
		ents, err := os.ReadDir(out)
		if err != nil {
			t.Fatal(err)
		}
		var n []string
		for _, e := range ents {
			n = append(n, e.Name())
		}
		return n
	}
	limited()
	if got := strings.Join(names(), ","); got != "a" {
		t.Fatalf("after a failed export, %s holds %s; want only a", out, got)
	}
	if err := os.WriteFile(filepath.Join(out, "big"), []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	limited("--force")
	if b, _ := os.ReadFile(filepath.Join(out, "big")); string(b) != "old" {
		t.Fatalf("a failed export --force left big holding %d bytes; want the old file", len(b))
	}
	if got := strings.Join(names(), ","); got != "a,big" {
		t.Fatalf("after a failed export --force, %s holds %s", out, got)
	}
	ok(t, path, "export", out, "--force")
	if b, _ := os.ReadFile(filepath.Join(out, "big")); string(b) != big {
		t.Fatalf("export --force wrote %d bytes; want %d", len(b), len(big))
	}
	if fi, _ := os.Stat(filepath.Join(out, "big")); fi.Mode().Perm() != 0o600 {
		t.Errorf("export --force changed the file's mode to %v", fi.Mode().Perm())
	}
}

// TestCatchFault: a read of a mapping past the end of a file another
// process cut (what verify's walk may meet) is an error wrapping errCut,
// not a crash of the command (SIGBUS).
func TestCatchFault(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const size = 1 << 16
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	data, err := unix.Mmap(int(f.Fd()), 0, size, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(data)
	if err := f.Truncate(0); err != nil {
		t.Fatal(err)
	}
	var sum byte
	err = catchFault(func() error {
		for i := 0; i < size; i += 4096 {
			sum += data[i]
		}
		return nil
	})
	if !errors.Is(err, errCut) {
		t.Fatalf("catchFault: %v; want errCut", err)
	}
	if err := catchFault(func() error { return io.EOF }); err != io.EOF {
		t.Errorf("catchFault passes on f's error: got %v", err)
	}
}

// TestForceNoTTY: with FORCE_NO_TTY in the environment (any value), write
// without VALUE reads no stdin and fails with "No value provided", as the
// Rust original does; a VALUE is still taken.
func TestForceNoTTY(t *testing.T) {
	path := storePath(t)
	cmd := exec.Command(bin, path, "write", "k")
	cmd.Env = append(os.Environ(), "FORCE_NO_TTY=")
	cmd.Stdin = strings.NewReader("piped")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), "No value provided") {
		t.Fatalf("FORCE_NO_TTY= write k: %v, %s; want exit 1, No value provided", err, out)
	}
	mustNotExist(t, path)
	cmd = exec.Command(bin, path, "write", "k", "v")
	cmd.Env = append(os.Environ(), "FORCE_NO_TTY=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("FORCE_NO_TTY=1 write k v: %v, %s", err, out)
	}
}

// TestTokenFile: serve and cluster status refuse a token file whose token
// no Authorization header can carry (a second line), and one too large to
// be a token (what /dev/zero would be, read without end), before anything
// else; a token read from a pipe is taken. (--raft-id alone is a usage
// error checked after the token: it shows the token was accepted.)
func TestTokenFile(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "s.simdr")
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cases := []struct {
		name, content, want string
		code                int
	}{
		{"two-lines", "sekret\n# the admin's note\n", "control character", exitFailure},
		{"nul", "sek\x00ret", "control character", exitFailure},
		{"huge", strings.Repeat("x", maxTokenBytes+1), "not a token", exitFailure},
		{"ok", "  sekret \n", "--raft-id", exitUsage},
	}
	for _, c := range cases {
		tok := write(c.name, c.content)
		r := fails(t, c.code, f, "serve", "--token-file", tok, "--raft-id", "n1")
		if !strings.Contains(string(r.stderr), c.want) {
			t.Errorf("%s: %v; want %q", c.name, r, c.want)
		}
		if c.code == exitFailure {
			r := fails(t, 1, "cluster", "status", "http://127.0.0.1:1", "--token-file", tok)
			if !strings.Contains(string(r.stderr), c.want) {
				t.Errorf("cluster status, %s: %v; want %q", c.name, r, c.want)
			}
		}
	}
	mustNotExist(t, f)
}

// TestServeAddressInUse: serve on an address in use (or with a bad port)
// fails before a missing FILE is created (it left an empty store file and
// its state file behind), for a single server and a cluster node.
func TestServeAddressInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dir := t.TempDir()
	tok := filepath.Join(dir, "tok")
	if err := os.WriteFile(tok, []byte("sekret"), 0o600); err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(dir, "s.simdr")
	for _, args := range [][]string{
		{"--addr", ln.Addr().String()},
		{"--addr", "127.0.0.1:99999"},
		{"--addr", ln.Addr().String(), "--token-file", tok, "--raft-id", "n1", "--raft-addr", "127.0.0.1:0", "--raft-dir", filepath.Join(dir, "raft"), "--bootstrap"},
	} {
		r := fails(t, 1, append([]string{f, "serve"}, args...)...)
		if !strings.Contains(string(r.stderr), "serve: listen") {
			t.Errorf("serve %q: %v; want the listen error", args, r)
		}
		mustNotExist(t, f)
		mustNotExist(t, f+"-simdr-shm")
	}
}

// TestFailedWriteCreatesNothing: a write or batch that stores nothing (an
// empty VALUE or stdin, a malformed batch line) creates no missing FILE
// (it left an empty store file and its state file behind); an empty batch
// input, which succeeds, still creates it.
func TestFailedWriteCreatesNothing(t *testing.T) {
	cases := []struct {
		stdin string
		args  []string
	}{
		{"", []string{"write", "k"}},
		{"", []string{"write", "k", "--ttl", "1m"}},
		{"", []string{"write", "k", ""}},
		{"", []string{"write", "k", "", "--ttl", "1m"}},
		{"{bad\n", []string{"batch"}},
		{`{"op":"put","key":"a","value":"1"}` + "\n" + `{"op":"nope","key":"a"}` + "\n", []string{"batch"}},
		{`{"op":"put","key":"a","value":"1"}` + "\n" + `{"op":"put","key":"b","value":""}` + "\n", []string{"batch", "--chunk", "5"}},
	}
	for _, c := range cases {
		path := storePath(t)
		r := simdrIn(t, strings.NewReader(c.stdin), append([]string{path}, c.args...)...)
		if r.code != 1 {
			t.Errorf("%q: %v; want exit 1", c.args, r)
		}
		mustNotExist(t, path)
		mustNotExist(t, path+"-simdr-shm")
	}
	path := storePath(t)
	simdrIn(t, strings.NewReader(""), path, "batch")
	if _, err := os.Stat(path); err != nil {
		t.Errorf("an empty batch did not create FILE: %v", err)
	}
}

// TestReadDashOutputTerminal: read -o - is stdout, and on a terminal gets
// the newline after the value that read without -o gets (it had none).
func TestReadDashOutputTerminal(t *testing.T) {
	f := storePath(t)
	ok(t, f, "write", "hello", "world")
	for _, args := range [][]string{{f, "read", "hello"}, {f, "read", "hello", "-o", "-"}} {
		code, tty, _, _ := runTTY(t, "stdout", args...)
		if code != 0 || tty != "world\r\n" {
			t.Errorf("%q to a terminal: exit %d, %q", args, code, tty)
		}
	}
	if got := string(ok(t, f, "read", "hello", "-o", "-").stdout); got != "world" {
		t.Errorf("read -o - to a pipe: %q", got)
	}
}

// TestShellHistoryNotAFile: a $SIMDR_HISTORY that is a FIFO (or another
// file that is not regular) is not used, with a warning, and the prompt
// comes (the shell blocked before its first prompt, opening the FIFO).
func TestShellHistoryNotAFile(t *testing.T) {
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Skip("tmux not installed")
	}
	dir := t.TempDir()
	f := filepath.Join(dir, "s.simdr")
	ok(t, f, "write", "k", "v")
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	tmux, _ := tmuxServer(t)
	tmux("new-session", "-d", "-s", "t", "-x", "150", "-y", "20", "env", "SIMDR_HISTORY="+fifo, bin, f, "shell")
	// A generous deadline only turns a hang into a failure (no timing assert).
	deadline := time.Now().Add(20 * time.Second)
	for {
		screen := tmux("capture-pane", "-p", "-t", "t")
		if strings.Contains(screen, "simdr>") {
			if !strings.Contains(screen, "is not a regular file") {
				t.Errorf("no warning about the history file:\n%s", screen)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the shell never showed its prompt:\n%s", screen)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
