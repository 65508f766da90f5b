// Package vfs is the operating-system boundary of simdr: the few file
// operations the engine performs, behind an interface that tests replace to
// inject faults (a full disk, an I/O error, a torn write).
package vfs

import (
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// File is an open store file. Reads go through a memory mapping of Fd, never
// through File, so only the writing side is here.
type File interface {
	// WriteAt writes all of p at off or returns an error (pwrite).
	WriteAt(p []byte, off int64) (int, error)
	// Truncate changes the file's size.
	Truncate(size int64) error
	// Sync makes the file's data durable (fdatasync).
	Sync() error
	// Size returns the file's current size (fstat). The writer calls it
	// before every write, to catch a file cut under it by another process,
	// so it must be cheap and allocate nothing.
	Size() (int64, error)
	// Fd returns the descriptor, for mmap and flock.
	Fd() uintptr
	// Stat describes the open file (for os.SameFile).
	Stat() (os.FileInfo, error)
	// Name returns the path the file was opened by.
	Name() string
	// Close closes the file.
	Close() error
}

// FS opens and manages store files.
type FS interface {
	OpenFile(name string, flag int, perm os.FileMode) (File, error)
	Rename(oldpath, newpath string) error
	Remove(name string) error
	Stat(name string) (os.FileInfo, error)
	// SyncDir makes the directory entries of dir durable (fsync of the
	// directory: after a file is created in it or renamed into it).
	SyncDir(dir string) error
}

// OS is the real file system.
var OS FS = osFS{}

type osFS struct{}

type osFile struct{ *os.File }

func (osFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return osFile{f}, nil
}

func (osFS) Rename(oldpath, newpath string) error  { return os.Rename(oldpath, newpath) }
func (osFS) Remove(name string) error              { return os.Remove(name) }
func (osFS) Stat(name string) (os.FileInfo, error) { return os.Stat(name) }

func (osFS) SyncDir(dir string) error {
	d, err := os.Open(filepath.Clean(dir))
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

func (f osFile) Sync() error {
	for {
		err := unix.Fdatasync(int(f.File.Fd()))
		if err != unix.EINTR {
			if err != nil {
				return &os.PathError{Op: "fdatasync", Path: f.File.Name(), Err: err}
			}
			return nil
		}
	}
}

// Size is fstat without the allocation of os.File.Stat's FileInfo.
func (f osFile) Size() (int64, error) {
	var st unix.Stat_t
	for {
		err := unix.Fstat(int(f.File.Fd()), &st)
		if err == nil {
			return st.Size, nil
		}
		if err != unix.EINTR {
			return 0, &os.PathError{Op: "fstat", Path: f.File.Name(), Err: err}
		}
	}
}
