// Package lock holds the advisory file locks (flock) that keep a second
// writer, in this process or another, away from a store file. A lock belongs
// to an open file description: closing it, or the process dying, releases it.
package lock

import (
	"errors"
	"time"

	"golang.org/x/sys/unix"
)

// ErrLocked is returned when another open file holds the lock.
var ErrLocked = errors.New("lock: held by another open file")

// Exclusive takes the exclusive lock on fd, retrying until timeout has passed
// (a zero timeout tries once).
func Exclusive(fd uintptr, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	wait := time.Millisecond
	for {
		err := unix.Flock(int(fd), unix.LOCK_EX|unix.LOCK_NB)
		switch {
		case err == nil:
			return nil
		case err == unix.EINTR:
			continue
		case err != unix.EWOULDBLOCK:
			return err
		}
		if !time.Now().Before(deadline) {
			return ErrLocked
		}
		time.Sleep(min(wait, time.Until(deadline)))
		wait = min(wait*2, 50*time.Millisecond)
	}
}

// Unlock releases the lock on fd.
func Unlock(fd uintptr) error { return unix.Flock(int(fd), unix.LOCK_UN) }

// Held reports whether another open file holds the exclusive lock on fd's
// file. When none does, it takes a shared lock for that instant (a writer
// trying to lock at the same instant fails as if the file were locked).
func Held(fd uintptr) (bool, error) {
	for {
		err := unix.Flock(int(fd), unix.LOCK_SH|unix.LOCK_NB)
		switch {
		case err == nil:
			return false, unix.Flock(int(fd), unix.LOCK_UN)
		case err == unix.EINTR:
			continue
		case err == unix.EWOULDBLOCK:
			return true, nil
		}
		return false, err
	}
}
