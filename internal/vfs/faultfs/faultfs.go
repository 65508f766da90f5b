// Package faultfs wraps a vfs.FS to inject I/O faults for tests: the Nth
// WriteAt, Sync or Truncate (or OpenFile, Rename, SyncDir) fails with an error
// such as ENOSPC or EIO, a WriteAt can write only part of its buffer before
// failing, and a file can be given a maximum size past which writes run out of
// space, like a small disk. Durable returns what a file held at its last
// successful Sync, from which tests build the images a power cut could leave.
// CutAfterSize truncates a file right after its size was read, as another
// process (or a full tmpfs that cannot supply a sparse file's pages) would
// make the end of a mapping fault.
//
// Faults are armed as Rules on the FS and apply to every file opened through
// it (optionally only to files whose path contains Rule.Match). Calls are
// counted per operation from the moment a rule is added, so "the Nth WriteAt"
// means the Nth WriteAt after Inject.
package faultfs

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"

	"github.com/simdr-go/simdr/internal/vfs"
)

// Op is a file-system operation a fault can be injected into.
type Op uint8

// The operations faults can be injected into.
const (
	WriteAt Op = iota
	Sync
	Truncate
	OpenFile
	Rename
	SyncDir
	numOps
)

var opNames = [numOps]string{"WriteAt", "Sync", "Truncate", "OpenFile", "Rename", "SyncDir"}

// String names the operation, as in the file system call it fails.
func (o Op) String() string {
	if o < numOps {
		return opNames[o]
	}
	return fmt.Sprintf("Op(%d)", uint8(o))
}

// Rule arms one fault.
type Rule struct {
	// Op is the operation that fails.
	Op Op
	// Nth is which matching call fails, counting from 1 at the moment the
	// rule is injected (0 means 1: the next call).
	Nth int
	// Err is the error returned, wrapped in an *os.PathError (nil means EIO).
	Err error
	// Keep, for WriteAt, is how many bytes of the buffer are written before
	// the call fails (clamped to the buffer's length); 0 writes nothing.
	Keep int
	// Sticky keeps the rule failing every matching call from the Nth on (a
	// disk that stays full) instead of once.
	Sticky bool
	// Match, when not empty, limits the rule to paths containing it.
	Match string
}

type rule struct {
	Rule
	seen  int
	spent bool
}

// FS is a vfs.FS that injects the faults armed on it. The zero value is not
// usable; call New.
type FS struct {
	base vfs.FS

	mu    sync.Mutex
	rules []*rule
	calls [numOps]int
	fired int
	limit int64 // max file size; 0 = none
	cut   *cut  // armed by CutAfterSize
	// durable holds each file's content as of its last successful Sync:
	// what a power cut would keep for sure.
	durable map[string][]byte
}

// New wraps base (vfs.OS when nil).
func New(base vfs.FS) *FS {
	if base == nil {
		base = vfs.OS
	}
	return &FS{base: base}
}

// Inject arms r.
func (f *FS) Inject(r Rule) {
	if r.Nth < 1 {
		r.Nth = 1
	}
	if r.Err == nil {
		r.Err = syscall.EIO
	}
	f.mu.Lock()
	f.rules = append(f.rules, &rule{Rule: r})
	f.mu.Unlock()
}

// Fail arms a one-shot fault: the nth call of op fails with err.
func (f *FS) Fail(op Op, nth int, err error) { f.Inject(Rule{Op: op, Nth: nth, Err: err}) }

// Clear disarms every rule and the size limit.
func (f *FS) Clear() {
	f.mu.Lock()
	f.rules, f.limit, f.cut = nil, 0, nil
	f.mu.Unlock()
}

// SetLimit makes every file a disk of n bytes: a WriteAt reaching past n
// writes what fits and fails with ENOSPC. 0 removes the limit.
func (f *FS) SetLimit(n int64) {
	f.mu.Lock()
	f.limit = n
	f.mu.Unlock()
}

// cut is a one-shot truncation armed by CutAfterSize.
type cut struct {
	match string
	to    int64
}

// CutAfterSize arms a one-shot fault: the next Size call on a file whose path
// contains match (any file when empty) returns the file's true size, and then
// the file is truncated to to bytes behind the caller's back. A caller that
// maps the file for the size it was told then faults (SIGBUS) on the pages
// past the new end, as when another process cuts the file, or when a full
// tmpfs cannot supply the pages of a sparse file. It counts as a fired fault.
func (f *FS) CutAfterSize(match string, to int64) {
	f.mu.Lock()
	f.cut = &cut{match: match, to: to}
	f.mu.Unlock()
}

// Calls returns how many calls of op went through the FS so far.
func (f *FS) Calls(op Op) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[op]
}

// Fired returns how many faults were injected so far (size-limit failures
// included).
func (f *FS) Fired() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.fired
}

// check counts a call of op on path and returns the rule that makes it fail,
// if any.
func (f *FS) check(op Op, path string) *rule {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[op]++
	var hit *rule
	for _, r := range f.rules {
		if r.Op != op || r.spent || (r.Match != "" && !strings.Contains(path, r.Match)) {
			continue
		}
		r.seen++
		if r.seen >= r.Nth && hit == nil {
			hit = r
			if !r.Sticky {
				r.spent = true
			}
		}
	}
	if hit != nil {
		f.fired++
	}
	return hit
}

func pathErr(op Op, path string, err error) error {
	return &os.PathError{Op: "faultfs " + op.String(), Path: path, Err: err}
}

// OpenFile opens name through the base FS, or fails as armed.
func (f *FS) OpenFile(name string, flag int, perm os.FileMode) (vfs.File, error) {
	if r := f.check(OpenFile, name); r != nil {
		return nil, pathErr(OpenFile, name, r.Err)
	}
	bf, err := f.base.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &file{File: bf, fs: f}, nil
}

// Rename renames through the base FS, or fails as armed (matched on oldpath).
func (f *FS) Rename(oldpath, newpath string) error {
	if r := f.check(Rename, oldpath); r != nil {
		return pathErr(Rename, oldpath, r.Err)
	}
	return f.base.Rename(oldpath, newpath)
}

// Remove removes through the base FS (no faults).
func (f *FS) Remove(name string) error { return f.base.Remove(name) }

// Stat stats through the base FS (no faults).
func (f *FS) Stat(name string) (os.FileInfo, error) { return f.base.Stat(name) }

// SyncDir syncs dir through the base FS, or fails as armed.
func (f *FS) SyncDir(dir string) error {
	if r := f.check(SyncDir, dir); r != nil {
		return pathErr(SyncDir, dir, r.Err)
	}
	return f.base.SyncDir(dir)
}

// file is a vfs.File whose writes go through the FS's rules.
type file struct {
	vfs.File
	fs *FS
}

func (fl *file) WriteAt(p []byte, off int64) (int, error) {
	if r := fl.fs.check(WriteAt, fl.Name()); r != nil {
		keep := min(max(r.Keep, 0), len(p))
		n := 0
		if keep > 0 {
			var err error
			if n, err = fl.File.WriteAt(p[:keep], off); err != nil {
				return n, err
			}
		}
		return n, pathErr(WriteAt, fl.Name(), r.Err)
	}
	fl.fs.mu.Lock()
	limit := fl.fs.limit
	if limit > 0 && off+int64(len(p)) > limit {
		fl.fs.fired++
	}
	fl.fs.mu.Unlock()
	if limit > 0 && off+int64(len(p)) > limit {
		n := 0
		if fit := limit - off; fit > 0 {
			var err error
			if n, err = fl.File.WriteAt(p[:fit], off); err != nil {
				return n, err
			}
		}
		return n, pathErr(WriteAt, fl.Name(), syscall.ENOSPC)
	}
	return fl.File.WriteAt(p, off)
}

func (fl *file) Sync() error {
	if r := fl.fs.check(Sync, fl.Name()); r != nil {
		return pathErr(Sync, fl.Name(), r.Err)
	}
	if err := fl.File.Sync(); err != nil {
		return err
	}
	b, err := os.ReadFile(fl.Name())
	if err != nil {
		return err
	}
	fl.fs.mu.Lock()
	if fl.fs.durable == nil {
		fl.fs.durable = make(map[string][]byte)
	}
	fl.fs.durable[fl.Name()] = b
	fl.fs.mu.Unlock()
	return nil
}

// Durable returns the content the file opened by name had at its last
// successful Sync through the FS (nil if it was never synced): what survives
// a power cut for sure. Later writes may survive in part, page by page.
func (f *FS) Durable(name string) []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return bytes.Clone(f.durable[name])
}

// Size returns the base file's size, then makes a cut armed by CutAfterSize.
func (fl *file) Size() (int64, error) {
	n, err := fl.File.Size()
	if err != nil {
		return n, err
	}
	fl.fs.mu.Lock()
	c := fl.fs.cut
	if c != nil && strings.Contains(fl.Name(), c.match) {
		fl.fs.cut = nil
		fl.fs.fired++
	} else {
		c = nil
	}
	fl.fs.mu.Unlock()
	if c != nil {
		if err := os.Truncate(fl.Name(), c.to); err != nil {
			return n, err
		}
	}
	return n, nil
}

func (fl *file) Truncate(size int64) error {
	if r := fl.fs.check(Truncate, fl.Name()); r != nil {
		return pathErr(Truncate, fl.Name(), r.Err)
	}
	return fl.File.Truncate(size)
}
