package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// memInfo is what /proc/self/status says about this process's memory.
type memInfo struct {
	anon int64 // RssAnon: private resident memory (heap, stacks, caches, indexes)
	hwm  int64 // VmHWM: peak resident set, mapped file pages included
}

// readMem reads RssAnon and VmHWM from /proc/self/status (0 where unavailable).
func readMem() memInfo {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return memInfo{}
	}
	var m memInfo
	for _, line := range bytes.Split(b, []byte("\n")) {
		switch {
		case bytes.HasPrefix(line, []byte("RssAnon:")):
			m.anon = kbField(line)
		case bytes.HasPrefix(line, []byte("VmHWM:")):
			m.hwm = kbField(line)
		}
	}
	return m
}

func kbField(line []byte) int64 {
	f := strings.Fields(string(line))
	if len(f) < 2 {
		return 0
	}
	v, _ := strconv.ParseInt(f[1], 10, 64)
	return v << 10
}

// sampler tracks the peak of RssAnon by reading it every 5 ms (the kernel
// keeps a peak only for the whole resident set, VmHWM, which counts the pages
// of memory-mapped files too).
type sampler struct {
	stopc chan struct{}
	wg    sync.WaitGroup
	peak  int64
}

func startSampler() *sampler {
	s := &sampler{stopc: make(chan struct{}), peak: readMem().anon}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-s.stopc:
				return
			case <-t.C:
				if a := readMem().anon; a > s.peak {
					s.peak = a
				}
			}
		}
	}()
	return s
}

// stop ends the sampling and returns the peak RssAnon and VmHWM.
func (s *sampler) stop() (peakAnon, hwm int64) {
	close(s.stopc)
	s.wg.Wait()
	m := readMem()
	return max(s.peak, m.anon), m.hwm
}

// diskUsage returns the bytes allocated on disk to the files under dir.
func diskUsage(dir string) int64 {
	var total int64
	filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				total += st.Blocks * 512
			}
		}
		return nil
	})
	return total
}

// machine describes where the benchmark ran.
type machine struct {
	CPU, Kernel, Go, FS string
	Cores               int
	RAM                 int64
	Modules             [][2]string // path, version
	Commit              string
}

func describeMachine(dir string) machine {
	m := machine{Go: runtime.Version(), Cores: runtime.NumCPU(), CPU: "unknown"}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "MemTotal:") {
				m.RAM = kbField([]byte(line))
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	m.FS = fsType(dir)
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			for _, s := range allStores {
				if s.module == d.Path {
					v := d.Version
					if d.Replace != nil {
						v = "local (" + d.Replace.Path + ")"
					}
					m.Modules = append(m.Modules, [2]string{d.Path, v})
				}
			}
		}
	}
	if out, err := exec.Command("git", "-C", "..", "rev-parse", "--short", "HEAD").Output(); err == nil {
		m.Commit = strings.TrimSpace(string(out))
		// Changes to the code (not to the reports) are not in that commit.
		if st, err := exec.Command("git", "-C", "..", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!docs").Output(); err == nil && len(bytes.TrimSpace(st)) > 0 {
			m.Commit += " with uncommitted changes"
		}
	}
	return m
}

// fsType returns the type of the file system dir is on, from /proc/self/mounts.
func fsType(dir string) string {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "unknown"
	}
	abs, _ = filepath.EvalSymlinks(abs)
	f, err := os.Open("/proc/self/mounts")
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	best, typ := "", "unknown"
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fl := strings.Fields(sc.Text())
		if len(fl) < 3 {
			continue
		}
		mp := fl[1]
		if (abs == mp || strings.HasPrefix(abs, strings.TrimSuffix(mp, "/")+"/")) && len(mp) >= len(best) {
			best, typ = mp, fl[2]
		}
	}
	return typ
}

// loadAvg returns the 1-minute load average from /proc/loadavg.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return ""
	}
	return f[0]
}

// evictDir writes back and drops from the page cache the files under dir
// (POSIX_FADV_DONTNEED: no privilege needed, and only these files leave the
// cache, not the other processes' on a shared machine). The kernel keeps
// pages a process has mapped, so the store must be closed. It fails when a
// hundredth of the files' pages or more stay cached.
func evictDir(dir string) error {
	var pages, left int64
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || !fi.Mode().IsRegular() || fi.Size() == 0 {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		fd := int(f.Fd())
		if err := unix.Fdatasync(fd); err != nil {
			return fmt.Errorf("fdatasync %s: %w", p, err)
		}
		if err := unix.Fadvise(fd, 0, 0, unix.FADV_DONTNEED); err != nil {
			return fmt.Errorf("fadvise %s: %w", p, err)
		}
		n, err := cachedPages(f, fi.Size())
		if err != nil {
			return err
		}
		pages += (fi.Size() + int64(os.Getpagesize()) - 1) / int64(os.Getpagesize())
		left += n
		return nil
	})
	if err == nil && left*100 > pages {
		err = fmt.Errorf("%d of %d pages stay in the page cache after POSIX_FADV_DONTNEED", left, pages)
	}
	return err
}

// cachedPages counts the pages of f (size bytes) in the page cache (mincore).
func cachedPages(f *os.File, size int64) (int64, error) {
	b, err := unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return 0, fmt.Errorf("mmap %s: %w", f.Name(), err)
	}
	defer unix.Munmap(b)
	vec := make([]byte, (size+int64(os.Getpagesize())-1)/int64(os.Getpagesize()))
	if _, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), uintptr(unsafe.Pointer(&vec[0]))); errno != 0 {
		return 0, fmt.Errorf("mincore %s: %w", f.Name(), errno)
	}
	var n int64
	for _, v := range vec {
		n += int64(v & 1)
	}
	return n, nil
}

// readBytes is what this process has had read from storage so far
// (read_bytes in /proc/self/io; page faults on mappings count too), or -1.
func readBytes() int64 {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return -1
	}
	for _, line := range bytes.Split(b, []byte("\n")) {
		if v, ok := bytes.CutPrefix(line, []byte("read_bytes: ")); ok {
			if n, err := strconv.ParseInt(string(v), 10, 64); err == nil {
				return n
			}
		}
	}
	return -1
}

// majorFaults is how many page faults of this process have read from
// storage so far (getrusage), or 0.
func majorFaults() int64 {
	var ru unix.Rusage
	if unix.Getrusage(unix.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return ru.Majflt
}
