package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/simdr-go/simdr"
)

var cmdBackup = &command{
	name: "backup", args: "DEST",
	summary: "write a consistent copy of FILE to DEST (incremental when DEST is an earlier backup)",
	help: `
Writes a consistent copy of FILE to DEST: every entry committed when the
command starts, as a valid store file, while other processes may go on
reading and writing FILE (opened read-only: no lock is taken). DEST is
written to a temporary file beside it, synced and renamed over it, so an
interrupted backup never leaves a DEST that is not a whole store file.

Beside DEST, DEST-simdr-backup (JSON: generation, from, tail) records what
DEST covers. When it matches DEST and FILE has the same generation (no
Compact since), only what was committed after it is read from FILE and
appended to a copy of DEST: an incremental backup. Otherwise a full one is
written. --json prints that record.`,
	examples: []string{
		`simdr data.simdr backup /backups/data.simdr`,
		`simdr data.simdr backup /backups/data.simdr --json`,
	},
	minArgs: 1, maxArgs: 1, json: true,
	run: runBackup,
}

// backupRecord is the file beside a backup saying what it covers.
func backupRecord(dest string) string { return dest + "-simdr-backup" }

func runBackup(a *app, file string, args []string) error {
	dest := args[0]
	if err := checkTarget(file, dest, "backup: DEST"); err != nil {
		return err
	}
	s, err := a.openRead(file)
	if err != nil {
		return err
	}
	defer s.Close()
	var prev *simdr.BackupInfo
	if b, err := os.ReadFile(backupRecord(dest)); err == nil {
		var p simdr.BackupInfo
		if json.Unmarshal(b, &p) == nil {
			prev = &p
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	info, err := s.BackupFile(dest, prev)
	if err != nil {
		return err
	}
	rec, err := json.Marshal(info)
	if err != nil {
		return err
	}
	// The record is written after DEST: a stale record (an interrupted run)
	// names a size DEST does not have, and the next run takes a full backup.
	if err := replaceFile(backupRecord(dest), append(rec, '\n')); err != nil {
		return fmt.Errorf("backup written, but not its record: %w", err)
	}
	if a.o.json {
		fmt.Fprintf(a.stdout, "%s\n", rec)
		return nil
	}
	kind := "full"
	if info.From > 0 {
		kind = "incremental"
	}
	a.info("%s backup of %s to %s: %s (%s read)", kind, file, dest, countUnit(info.Tail, "byte"), countUnit(info.Tail-info.From, "byte"))
	return nil
}

// replaceFile writes b to a temporary file beside name and renames it over
// name: a crash leaves the old content or the new one, never a part, and a
// symbolic link planted at name is replaced, not followed.
func replaceFile(name string, b []byte) error {
	tmp, err := createTemp(name)
	if err != nil {
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	return commitTemp(tmp, name, nil)
}
