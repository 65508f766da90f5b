package simdr

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/simdr-go/simdr/internal/format"
	"github.com/simdr-go/simdr/internal/vfs"
)

const (
	gapsRepairEnv  = "SIMDR_GAPS_REPAIR_CHILD" // the moment to hang at ("write" or "rename"), ":", the path
	gapsHangMarker = "SIMDR-GAPS-HANGING"
)

// hangFS hangs the process at one moment of a repair that rewrites the
// file, once the replacement file exists, and says so on standard output:
// at the first write into a file other than the store ("write"), or at the
// rename over the store ("rename"). The parent then kills it there.
type hangFS struct {
	vfs.FS
	store, at string
}

func (h hangFS) hang() {
	fmt.Println(gapsHangMarker)
	os.Stdout.Sync()
	select {}
}

func (h hangFS) OpenFile(name string, flag int, perm os.FileMode) (vfs.File, error) {
	f, err := h.FS.OpenFile(name, flag, perm)
	if err != nil || name == h.store || h.at != "write" {
		return f, err
	}
	return hangFile{f, h}, nil
}

func (h hangFS) Rename(oldpath, newpath string) error {
	if h.at == "rename" {
		h.hang()
	}
	return h.FS.Rename(oldpath, newpath)
}

type hangFile struct {
	vfs.File
	h hangFS
}

func (f hangFile) WriteAt(p []byte, off int64) (int, error) {
	f.h.hang()
	return 0, nil
}

// TestGapsRepairLeftoverChild is the child of TestGapsRepairLeftover: it
// opens the file with Options.Repair through hangFS, and is killed there.
func TestGapsRepairLeftoverChild(t *testing.T) {
	at, path, ok := strings.Cut(os.Getenv(gapsRepairEnv), ":")
	if !ok {
		t.Skip("child of TestGapsRepairLeftover")
	}
	s, err := Open(path, &Options{Repair: true, fs: hangFS{FS: vfs.OS, store: path, at: at}})
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(2)
	}
	s.Close()
	fmt.Println("the repair did not hang")
	os.Exit(3)
}

// TestGapsRepairLeftover: a repair that rewrites the file, SIGKILLed (a real
// process) once its temporary file exists, leaves that file behind; the
// next writer's Open removes it, whether it repairs or not, and removes
// nothing else: not a user's file named like the repair files of older
// versions (FILE.repair-XXXXXXXXXXXX), nor the repair file name of another
// inode, nor the legacy compaction name.
func TestGapsRepairLeftover(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns child processes")
	}
	var img []byte
	for i := range 400 {
		v := bytes.Repeat([]byte{byte(i)}, 700)
		copy(v, fmt.Sprint("v", i))
		img = format.AppendEntry(img, int64(len(img)), Hash([]byte(fmt.Sprint("k", i))), v)
	}
	for i := len(img) / 2; i < len(img)/2+3000; i++ { // garbage over a few entries: they move down
		img[i] = byte(i*31 + 7)
	}
	dir := t.TempDir()
	oracle := filepath.Join(dir, "oracle")
	os.WriteFile(oracle, img, 0o644)
	o, err := Open(oracle, &Options{Repair: true})
	if err != nil {
		t.Fatal(err)
	}
	want := contents(o)
	if rep := o.Repaired(); rep == nil || !rep.Rewritten {
		t.Fatalf("the uninterrupted repair does not rewrite: %+v", rep)
	}
	o.Close()
	os.Remove(oracle)

	tests := []struct {
		name, at string
		repair   bool // the next Open repairs (else it fails: the file is still damaged)
	}{
		{"killed writing, then Open", "write", false},
		{"killed writing, then Repair", "write", true},
		{"killed renaming, then Open", "rename", false},
		{"killed renaming, then Repair", "rename", true},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sub := filepath.Join(dir, strconv.Itoa(i))
			os.Mkdir(sub, 0o755)
			path := filepath.Join(sub, "s.simdr")
			os.WriteFile(path, img, 0o644)
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			ino := fi.Sys().(*syscall.Stat_t).Ino
			decoys := []string{
				"s.simdr.repair-0123456789ab",
				".s.simdr." + strconv.FormatUint(ino+1, 16) + ".simdr.repair",
				"s.simdr.compact",
			}
			for _, d := range decoys {
				os.WriteFile(filepath.Join(sub, d), []byte("a user's file"), 0o644)
			}
			runHungChild(t, path, tc.at)
			names := dirNames(t, sub)
			if len(names) <= 1+len(decoys) {
				t.Fatalf("the killed repair left no temporary file: %q", names)
			}
			s, err := Open(path, &Options{Repair: tc.repair})
			if tc.repair {
				if err != nil {
					t.Fatalf("Repair after the kill: %v", err)
				}
				got := contents(s)
				s.Close()
				if len(got) != len(want) {
					t.Fatalf("Repair after the kill keeps %d keys, an uninterrupted one %d", len(got), len(want))
				}
				for h, v := range want {
					if got[h] != v {
						t.Fatalf("key %x differs from the uninterrupted repair", h)
					}
				}
			} else if err == nil {
				s.Close()
				t.Fatal("a damaged file opened without Repair")
			}
			wantNames := append([]string{"s.simdr"}, decoys...)
			slices.Sort(wantNames)
			if got := dirNames(t, sub); !slices.Equal(got, wantNames) {
				t.Fatalf("after the next Open the directory holds %q, want %q", got, wantNames)
			}
			for _, d := range decoys {
				if b, _ := os.ReadFile(filepath.Join(sub, d)); string(b) != "a user's file" {
					t.Fatalf("%s was changed: %q", d, b)
				}
			}
		})
	}
}

// runHungChild runs TestGapsRepairLeftoverChild on path and SIGKILLs it
// once it says it hangs at the moment at.
func runHungChild(t *testing.T, path, at string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestGapsRepairLeftoverChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), gapsRepairEnv+"="+at+":"+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	hung := make(chan bool, 1)
	var said []string
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if sc.Text() == gapsHangMarker {
				hung <- true
				return
			}
			said = append(said, sc.Text())
		}
		hung <- false
	}()
	select {
	case ok := <-hung:
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		if !ok {
			t.Fatalf("the child ended without hanging: %q", said)
		}
	case <-time.After(2 * time.Minute):
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		t.Fatal("the child never reached the moment to kill it at")
	}
}
