package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Command flags are accepted anywhere, before FILE too (docs/cli.md).
func TestFlagsAnywhere(t *testing.T) {
	f := storePath(t)
	ok(t, f, "write", "k", "v")
	for _, args := range [][]string{
		{"--force", f, "delete", "gone"},
		{"-f", f, "delete", "gone"},
		{f, "--force", "delete", "gone"},
		{f, "delete", "--force", "gone"},
		{f, "delete", "gone", "-f"},
		{"--lock-timeout", "1s", "-q", f, "delete", "gone", "--force"},
	} {
		ok(t, args...)
	}
	if got := ok(t, "-b", "64K", f, "read", "k").stdout; string(got) != "v" {
		t.Errorf("read with -b before FILE = %q", got)
	}
	// A flag of another command, or none, is still a usage error.
	for _, args := range [][]string{
		{"--force", f, "info"},
		{"--nope", f, "info"},
		{f, "info", "--namespace"},
	} {
		fails(t, 2, args...)
	}
}

// Messages: the path said once, the missing directory named, what is not a
// regular file refused up front (no hang on a FIFO, no mmap error), singular
// units.
func TestMessages(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "s.simdr")
	r := ok(t, f, "write", "k", "v")
	if !strings.Contains(string(r.stderr), `Stored "k" (1 byte)`) {
		t.Errorf("write of 1 byte: %q", r.stderr)
	}
	if out := string(ok(t, f, "metadata", "k").stdout); !strings.Contains(out, "PAYLOAD SIZE:             1 byte\n") {
		t.Errorf("metadata of 1 byte:\n%s", out)
	}
	in := filepath.Join(dir, "in")
	writeTree(t, in, map[string]string{"one": "1"})
	if r := ok(t, f, "import", in); !strings.Contains(string(r.stderr), "Imported 1 file (1 byte)") {
		t.Errorf("import of 1 file: %q", r.stderr)
	}
	if r := ok(t, f, "export", filepath.Join(dir, "out")); !strings.Contains(string(r.stderr), "Exported 1 file (1 byte)") {
		t.Errorf("export of 1 file: %q", r.stderr)
	}

	// A missing directory is named as such.
	r = fails(t, 1, filepath.Join(dir, "nodir", "x.simdr"), "write", "k", "v")
	if !strings.Contains(string(r.stderr), `directory "`+filepath.Join(dir, "nodir")+`" does not exist`) {
		t.Errorf("write into a missing directory: %v", r)
	}
	mustNotExist(t, filepath.Join(dir, "nodir"))

	// Not a regular file: refused before the open, whatever the command.
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, file := range []string{dir, fifo, "/dev/zero"} {
		if _, err := os.Stat(file); err != nil {
			continue
		}
		for _, args := range [][]string{{"info"}, {"read", "k"}, {"write", "k", "v"}, {"list"}, {"delete", "k"}, {"verify"}, {"has", "k"}, {"shell"}, {"repair"}} {
			cmd := exec.Command(bin, append([]string{file}, args...)...)
			timer := time.AfterFunc(10*time.Second, func() { cmd.Process.Kill() }) // a hang fails, not blocks, the test
			out, err := cmd.CombinedOutput()
			timer.Stop()
			if ee := (*exec.ExitError)(nil); !errors.As(err, &ee) || ee.ExitCode() != 1 ||
				!strings.Contains(string(out), "is not a regular file") || strings.Contains(string(out), "mmap") {
				t.Errorf("simdr %s %v: %v, %q", file, args, err, out)
			}
		}
	}

	// Permission denied, said once (as root, which may open anything, run as nobody).
	un, err := os.MkdirTemp("", "simdr-perm")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(un)
	os.Chmod(un, 0o777)
	pf := filepath.Join(un, "p.simdr")
	ok(t, pf, "write", "k", "v")
	os.Chmod(pf, 0)
	cmd := exec.Command(bin, pf, "read", "k")
	if os.Getuid() == 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	}
	out, _ := cmd.CombinedOutput()
	if got := strings.TrimSpace(string(out)); got != "simdr: open "+pf+": permission denied" {
		t.Errorf("read of an unreadable file: %q", got)
	}
}

// import: a dangling symbolic link, an unreadable subdirectory and a file
// named like the manifest's reserved key are each reported, and the rest is
// imported (exit 1).
func TestImportProblems(t *testing.T) {
	base, err := os.MkdirTemp("", "simdr-import")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(base)
	os.Chmod(base, 0o777) // as root, the import runs as nobody
	in := filepath.Join(base, "in")
	writeTree(t, in, map[string]string{"a.txt": "alpha", "sub/b.txt": "beta", "locked/c.txt": "secret", manifestName: "evil"})
	if err := os.Symlink(filepath.Join(base, "nowhere"), filepath.Join(in, "dangling")); err != nil {
		t.Fatal(err)
	}
	filepath.WalkDir(in, func(p string, d os.DirEntry, err error) error {
		if d.IsDir() {
			os.Chmod(p, 0o755)
		}
		return nil
	})
	os.Chmod(filepath.Join(in, "locked"), 0)
	defer os.Chmod(filepath.Join(in, "locked"), 0o755)
	f := filepath.Join(base, "s.simdr")
	cmd := exec.Command(bin, f, "import", in)
	if os.Getuid() == 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	}
	out, err := cmd.CombinedOutput()
	if ee := (*exec.ExitError)(nil); !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("import: %v, %s", err, out)
	}
	for _, want := range []string{
		"skipped " + filepath.Join(in, "dangling") + ": a symbolic link to nothing",
		"skipped " + filepath.Join(in, "locked") + ": open: permission denied",
		"its name is the import manifest's reserved key",
		"Imported 2 files (9 bytes)",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("import output lacks %q:\n%s", want, out)
		}
	}
	if got := readKey(t, f, "sub/b.txt"); string(got) != "beta" {
		t.Errorf("sub/b.txt = %q", got)
	}
	// The manifest is intact: export writes exactly the two files.
	outDir := filepath.Join(base, "out")
	ok(t, f, "export", outDir)
	if got, _ := os.ReadFile(filepath.Join(outDir, "a.txt")); string(got) != "alpha" {
		t.Errorf("exported a.txt = %q", got)
	}
	mustNotExist(t, filepath.Join(outDir, manifestName))
}

// export: all or nothing when a subdirectory of DIR is a symbolic link that
// leads out of it; a refused export creates no DIR.
func TestExportAllOrNothing(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in")
	writeTree(t, in, map[string]string{"a.txt": "alpha", "sub/b.txt": "beta", "z.txt": "zed"})
	f := filepath.Join(dir, "s.simdr")
	ok(t, f, "import", in)

	out := filepath.Join(dir, "out")
	elsewhere := filepath.Join(dir, "elsewhere")
	os.MkdirAll(out, 0o755)
	os.MkdirAll(elsewhere, 0o755)
	os.Symlink(elsewhere, filepath.Join(out, "sub"))
	r := fails(t, 1, f, "export", out)
	if !strings.Contains(string(r.stderr), filepath.Join(out, "sub")+" is a symbolic link that leads out of") ||
		!strings.Contains(string(r.stderr), "nothing written") {
		t.Errorf("export through a symlink: %v", r)
	}
	for _, p := range []string{filepath.Join(out, "a.txt"), filepath.Join(out, "z.txt"), filepath.Join(elsewhere, "b.txt")} {
		mustNotExist(t, p)
	}
	// A symbolic link that stays inside DIR is followed.
	os.Remove(filepath.Join(out, "sub"))
	os.MkdirAll(filepath.Join(out, "real"), 0o755)
	os.Symlink("real", filepath.Join(out, "sub"))
	ok(t, f, "export", out)
	if got, _ := os.ReadFile(filepath.Join(out, "real", "b.txt")); string(got) != "beta" {
		t.Errorf("export through an inside link: %q", got)
	}
	// A file where a directory must go.
	out2 := filepath.Join(dir, "out2")
	writeTree(t, out2, map[string]string{"sub": "a file"})
	r = fails(t, 1, f, "export", out2)
	if !strings.Contains(string(r.stderr), "is not a directory") {
		t.Errorf("export over a file named like a directory: %v", r)
	}
	mustNotExist(t, filepath.Join(out2, "a.txt"))

	// A refused export creates no DIR.
	fresh := filepath.Join(dir, "fresh", "deeper")
	r = simdrIn(t, strings.NewReader("../evil\n"), f, "export", fresh, "--keys-from", "-")
	if r.code != 1 || !strings.Contains(string(r.stderr), "not a clean relative path") {
		t.Errorf("export of ../evil: %v", r)
	}
	mustNotExist(t, filepath.Join(dir, "fresh"))
	// DIR an existing file: refused.
	fails(t, 1, f, "export", filepath.Join(in, "a.txt"))
}
