package simdr

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/simdr-go/simdr/internal/format"
)

const repairKillEnv = "SIMDR_ATTACK_REPAIR_CHILD"

// TestAttackRepairKillChild is the child of TestAttackRepairKill: it opens
// the file with Options.Repair and closes it.
func TestAttackRepairKillChild(t *testing.T) {
	path := os.Getenv(repairKillEnv)
	if path == "" {
		t.Skip("child of TestAttackRepairKill")
	}
	s, err := Open(path, &Options{Repair: true})
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(2)
	}
	s.Close()
}

// contents maps every live key hash of s to its value.
func contents(s *Store) map[uint64]string {
	m := map[uint64]string{}
	for e := range s.Entries() {
		m[e.KeyHash()] = string(e.Bytes())
	}
	return m
}

// TestAttackRepairKill: SIGKILL a real process while it repairs a damaged
// file (the rewrite into a new file, and the relinking in place), at
// moments spread over the repair. Whatever the moment, the file left is
// either still refused (ErrCorrupt) or opens as the finished repair would;
// and a Repair run afterwards always ends with every intact entry, exactly
// what an uninterrupted repair keeps.
func TestAttackRepairKill(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns child processes")
	}
	var img []byte
	for i := 0; i < 24000; i++ {
		k := i
		if i >= 20000 {
			k = (i * 7) % 20000 // newer versions of older keys
		}
		v := bytes.Repeat([]byte{byte(i)}, 1200)
		copy(v, fmt.Sprintf("k%d-%d", k, i))
		img = format.AppendEntry(img, int64(len(img)), Hash([]byte(fmt.Sprint("k", k))), v)
	}
	es := entryEnds(img)
	rewrite := bytes.Clone(img)
	for i := len(img) / 2; i < len(img)/2+5000; i++ { // garbage over a few entries: they move down
		rewrite[i] = byte(i*31 + 7)
	}
	inPlace := bytes.Clone(img)
	for _, j := range []int{1000, 9000, 15000, 21000, 23990} { // damaged prev links: relinked in place
		inPlace[es[j].End+8] ^= 0x04
	}
	for _, c := range []struct {
		name string
		img  []byte
	}{{"rewrite", rewrite}, {"in place", inPlace}} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			oracle := filepath.Join(dir, "oracle")
			os.WriteFile(oracle, c.img, 0o644)
			o, err := Open(oracle, &Options{Repair: true})
			if err != nil {
				t.Fatal(err)
			}
			want := contents(o)
			if rep := o.Repaired(); rep == nil || rep.Rewritten != (c.name == "rewrite") {
				t.Fatalf("the uninterrupted repair: %+v", rep)
			}
			o.Close()
			for round, delay := range []time.Duration{0, 10, 25, 40, 60, 80, 110, 150, 220} {
				path := filepath.Join(dir, fmt.Sprint("s", round))
				os.WriteFile(path, c.img, 0o644)
				cmd := exec.Command(os.Args[0], "-test.run=^TestAttackRepairKillChild$", "-test.count=1")
				cmd.Env = append(os.Environ(), repairKillEnv+"="+path)
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				time.Sleep(delay * time.Millisecond)
				cmd.Process.Signal(syscall.SIGKILL)
				cmd.Wait()
				if s, err := Open(path, &Options{ReadOnly: true}); err == nil {
					got := contents(s)
					s.Close()
					if len(got) != len(want) {
						t.Fatalf("round %d (kill after %v): the file opens with %d keys, the repair keeps %d", round, delay, len(got), len(want))
					}
					for h, v := range want {
						if got[h] != v {
							t.Fatalf("round %d: key %x differs from the finished repair", round, h)
						}
					}
				} else if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("round %d: %v", round, err)
				}
				s, err := Open(path, &Options{Repair: true})
				if err != nil {
					t.Fatalf("round %d: Repair after the kill: %v", round, err)
				}
				got := contents(s)
				if err := s.Verify(); err != nil {
					t.Fatalf("round %d: %v", round, err)
				}
				s.Close()
				if len(got) != len(want) {
					t.Fatalf("round %d (kill after %v): Repair after the kill keeps %d keys, an uninterrupted one %d", round, delay, len(got), len(want))
				}
				for h, v := range want {
					if got[h] != v {
						t.Fatalf("round %d: key %x: %.20q, want %.20q", round, h, got[h], v)
					}
				}
			}
		})
	}
}
