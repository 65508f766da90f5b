package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/simdr-go/simdr/internal/format"
)

// damagedStore writes a store whose chain is broken below intact entries
// (a flipped prev link in the middle): Open refuses it with ErrCorrupt.
func damagedStore(t *testing.T) (path string, img []byte) {
	t.Helper()
	var b []byte
	var ends []int64
	for i := 0; i < 20; i++ {
		b = format.AppendEntry(b, int64(len(b)), format.Hash([]byte{byte('a' + i)}), bytes.Repeat([]byte{byte('A' + i)}, 100))
		ends = append(ends, int64(len(b)))
	}
	b[ends[10]-format.MetaSize+8] ^= 0x04 // entry 10's prev
	path = storePath(t)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path, b
}

// TestAttackCLIDamaged: every command that opens a damaged store, for
// reading or writing, fails (exit 1) naming the damage, and leaves the file
// byte for byte as it was; backup creates no DEST. repair then salvages it.
func TestAttackCLIDamaged(t *testing.T) {
	cases := []struct {
		name  string
		stdin string
		args  []string
	}{
		{"read", "", []string{"read", "a"}},
		{"write", "", []string{"write", "z", "v"}},
		{"batch", `{"op":"put","key":"z","value":"v"}` + "\n", []string{"batch"}},
		{"shell", "put z v\nget a\n", []string{"shell"}},
		{"backup", "", []string{"backup", "DEST"}},
		{"compact", "", []string{"compact"}},
		{"info", "", []string{"info"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path, img := damagedStore(t)
			dest := filepath.Join(t.TempDir(), "backup.simdr")
			args := append([]string{path}, c.args...)
			for i, a := range args {
				if a == "DEST" {
					args[i] = dest
				}
			}
			r := simdrIn(t, strings.NewReader(c.stdin), args...)
			if r.code != 1 {
				t.Fatalf("%v; want exit 1", r)
			}
			if !strings.Contains(string(r.stderr), "corrupt") && !strings.Contains(string(r.stderr), "damaged") {
				t.Errorf("stderr does not name the damage: %q", r.stderr)
			}
			if got, _ := os.ReadFile(path); !bytes.Equal(got, img) {
				t.Fatal("the damaged file was changed")
			}
			if _, err := os.Stat(dest); err == nil {
				t.Fatal("backup of a damaged store left a DEST")
			}
		})
	}
	path, _ := damagedStore(t)
	ok(t, path, "repair")
	ok(t, path, "verify")
	if r := ok(t, path, "read", "t"); !bytes.Equal(bytes.TrimSpace(r.stdout), bytes.Repeat([]byte{'T'}, 100)) {
		t.Fatalf("after repair, read t: %v", r)
	}
}

// TestAttackCLIBackupOntoItself: `simdr FILE backup FILE` must refuse, and
// leave FILE the very file a running writer holds (same inode).
func TestAttackCLIBackupOntoItself(t *testing.T) {
	path := storePath(t)
	ok(t, path, "write", "k", "v")
	fi0, _ := os.Stat(path)
	fails(t, 1, path, "backup", path)
	fi1, _ := os.Stat(path)
	if !os.SameFile(fi0, fi1) {
		t.Fatal("backup onto the store replaced the store file")
	}
	if _, err := os.Stat(path + "-simdr-backup"); err == nil {
		t.Error("a refused backup wrote its record")
	}
}

// TestAttackCLIShellHostile: hostile lines piped into the shell each fail
// on their own line (exit 1 at the end) and the shell goes on.
func TestAttackCLIShellHostile(t *testing.T) {
	path := storePath(t)
	long := strings.Repeat("x", 2<<20)
	lines := []string{
		`put a "unterminated`,
		`put a 'unterminated`,
		`put a "\xZZ"`,
		`put a ""`,
		`put a "\x00"`,
		`put`,
		`get`,
		`delete nope`,
		`frobnicate`,
		"put a \x00\x01\x02",
		"put big " + long,
		`put ok "fine"`,
	}
	r := simdrIn(t, strings.NewReader(strings.Join(lines, "\n")+"\nget ok\nget big\n"), path, "shell")
	if r.code != 1 {
		t.Fatalf("%v; want exit 1", r)
	}
	out := string(r.stdout)
	if !strings.HasPrefix(out, "fine\n") || !strings.Contains(out, long) {
		t.Fatalf("the shell did not go on after the bad lines: stdout %q", out[:min(len(out), 200)])
	}
	for _, n := range []string{"line 1:", "line 2:", "line 3:", "line 4:", "line 5:", "line 6:", "line 7:", "line 8:", "line 9:"} {
		if !strings.Contains(string(r.stderr), n) {
			t.Errorf("no error for %s in %q", n, r.stderr)
		}
	}
	ok(t, path, "verify")
}
