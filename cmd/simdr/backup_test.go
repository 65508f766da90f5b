package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/simdr-go/simdr"
)

// TestBackupCommand: a full backup, then an incremental one, each a store
// file equal to the source; a Compact in between makes the next one full.
func TestBackupCommand(t *testing.T) {
	f := storePath(t)
	dest := filepath.Join(t.TempDir(), "b.simdr")
	ok(t, f, "write", "a", "1")
	info := func(args ...string) simdr.BackupInfo {
		t.Helper()
		r := ok(t, append([]string{f, "backup", dest, "--json"}, args...)...)
		var bi simdr.BackupInfo
		if err := json.Unmarshal(r.stdout, &bi); err != nil {
			t.Fatalf("backup --json: %q: %v", r.stdout, err)
		}
		src, _ := os.ReadFile(f)
		got, _ := os.ReadFile(dest)
		if !bytes.Equal(src, got) || bi.Tail != int64(len(src)) {
			t.Fatalf("backup (%+v) differs from the store", bi)
		}
		return bi
	}
	if bi := info(); bi.From != 0 {
		t.Fatalf("first backup incremental: %+v", bi)
	}
	ok(t, f, "write", "b", "2")
	if bi := info(); bi.From == 0 {
		t.Fatalf("second backup not incremental: %+v", bi)
	}
	ok(t, f, "compact")
	ok(t, f, "write", "c", "3")
	if bi := info(); bi.From != 0 {
		t.Fatalf("backup after a compact incremental: %+v", bi)
	}
	// A record that no longer matches DEST (DEST replaced by hand): full.
	os.WriteFile(dest, []byte{}, 0o644)
	if bi := info(); bi.From != 0 {
		t.Fatalf("backup over a replaced DEST incremental: %+v", bi)
	}
	r := ok(t, dest, "read", "c")
	if string(r.stdout) != "3" && string(r.stdout) != "3\n" {
		t.Fatalf("read from the backup: %q", r.stdout)
	}
}
