package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"sync"
	"time"
)

// The workloads, in the order a child runs them.
const (
	wLoad    = "load"    // N keys in batches of 1,000, then one sync
	wGet1    = "get1"    // every key once, random order, 1 goroutine
	wGetP    = "getP"    // every key once, random order, GOMAXPROCS goroutines
	wReopen  = "reopen"  // Close, Open, first Get
	wClose   = "close"   // the Close part of reopen
	wSeqRead = "seqread" // one sequential read of the store's files
	wMixed   = "mixed"   // N ops, 90 % Get / 10 % Put, GOMAXPROCS goroutines
	wBigIn   = "bigin"   // a big value streamed in, then synced
	wBigOut  = "bigout"  // the big value streamed out into a CRC-32
	// From a cold page cache (the store's files evicted), after the others:
	wColdReopen = "coldreopen" // Open and first Get
	wCold       = "cold"       // cold<k>: k random Gets after an Open; Bytes: read from storage
	wPread      = "pread"      // pread<k>: k random 4 KiB preads of the store's files
)

// coldGets are the numbers of cold Gets timed after one Open, and
// coldRounds how many times each is done (each round evicts the files and
// opens the store again).
var coldGets = []int{100, 1000}

const coldRounds = 10

const batchSize = 1000

// measure is one timed workload.
type measure struct {
	Ops   int64 `json:"ops"`
	Ns    int64 `json:"ns"`
	Bytes int64 `json:"bytes,omitempty"` // user bytes moved (load, big value)
	P50   int64 `json:"p50,omitempty"`   // the median op's ns, where each op was timed (cold Gets, preads)
	Major int64 `json:"major,omitempty"` // page faults that read from storage meanwhile (the random Gets)
}

// result is what one child reports for one store and one size.
type result struct {
	Store         string             `json:"store"`
	N             int                `json:"n"`
	Size          int                `json:"size"`
	M             map[string]measure `json:"m"`
	FileBytes     int64              `json:"file_bytes"`      // allocated on disk after the load (store closed)
	SetupAnon     int64              `json:"setup_anon"`      // private RSS once the harness's data was set up
	PeakAnon      int64              `json:"peak_anon"`       // peak private RSS (sampled)
	HWM           int64              `json:"hwm"`             // VmHWM: peak RSS including mapped file pages
	IndexBytes    int64              `json:"index_bytes"`     // simdr: Stats().IndexBytes after the load
	IndexBytesReo int64              `json:"index_bytes_reo"` // simdr: after the reopen
	IndexKeys     int64              `json:"index_keys"`
	Err           string             `json:"err,omitempty"`
}

// dataset generates the keys and values, the same for every store.
// Key i is the 16 hex digits of a bijective mix of i (so keys arrive in random
// order for ordered stores); value i is size bytes from a pool of random
// (incompressible) bytes at a position chosen by i.
type dataset struct {
	n, size int
	pool    []byte
	perm    []uint32 // the random order of the read workloads
}

const poolBytes = 8 << 20

func newDataset(n, size int, seed uint64) *dataset {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	d := &dataset{n: n, size: size, pool: make([]byte, poolBytes+size+8)}
	for i := 0; i+8 <= len(d.pool); i += 8 {
		binary.LittleEndian.PutUint64(d.pool[i:], r.Uint64())
	}
	d.perm = make([]uint32, n)
	for i := range d.perm {
		d.perm[i] = uint32(i)
	}
	r.Shuffle(n, func(i, j int) { d.perm[i], d.perm[j] = d.perm[j], d.perm[i] })
	return d
}

func mix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

const hexDigits = "0123456789abcdef"

// key writes key i into dst (16 bytes) and returns it.
func (d *dataset) key(i int, dst []byte) []byte {
	x := mix64(uint64(i))
	dst = dst[:16]
	for j := 15; j >= 0; j-- {
		dst[j] = hexDigits[x&15]
		x >>= 4
	}
	return dst
}

const keyLen = 16

// value returns value i of version ver (0 for the load, 1 for the mixed workload's puts).
func (d *dataset) value(i, ver int) []byte {
	off := int(mix64(uint64(i)^uint64(ver)<<40) % poolBytes)
	return d.pool[off : off+d.size]
}

func (d *dataset) head(i int) uint64 { return binary.LittleEndian.Uint64(d.value(i, 0)) }

// childOpts is what the parent passes to a child.
type childOpts struct {
	store      storeDef
	n, size    int
	big        int64
	dir        string
	seed       uint64
	profile    string // workload to CPU-profile
	cpuprofile string // where to write that profile
	cold       bool   // run the cold-cache workloads (runCold) too
}

// profiled runs fn, CPU-profiling it when it is the workload asked for.
func (o *childOpts) profiled(w string, fn func() error) error {
	if o.cpuprofile == "" || o.profile != w {
		return fn()
	}
	f, err := os.Create(o.cpuprofile)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := pprof.StartCPUProfile(f); err != nil {
		return err
	}
	defer pprof.StopCPUProfile()
	return fn()
}

// timed runs fn and returns how long it took.
func timed(fn func() error) (time.Duration, error) {
	t := time.Now()
	err := fn()
	return time.Since(t), err
}

// runKV runs the key/value workloads on one store and fills r.
func runKV(o *childOpts, r *result) error {
	d := newDataset(o.n, o.size, o.seed)
	runtime.GC()
	r.SetupAnon = readMem().anon
	mem := startSampler()
	defer func() { r.PeakAnon, r.HWM = mem.stop() }()

	s, err := o.store.open(o.dir)
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	defer func() {
		if s != nil {
			s.Close()
		}
	}()
	userBytes := int64(o.n) * int64(keyLen+o.size)

	// Load.
	keyArena := make([]byte, batchSize*keyLen)
	keys := make([][]byte, batchSize)
	vals := make([][]byte, batchSize)
	var dt time.Duration
	err = o.profiled(wLoad, func() error {
		dt, err = timed(func() error {
			for i := 0; i < o.n; i += batchSize {
				m := min(batchSize, o.n-i)
				for j := 0; j < m; j++ {
					keys[j] = d.key(i+j, keyArena[j*keyLen:])
					vals[j] = d.value(i+j, 0)
				}
				if err := s.PutBatch(keys[:m], vals[:m]); err != nil {
					return err
				}
			}
			return s.Sync()
		})
		return err
	})
	if err != nil {
		return fmt.Errorf("load: %w", err)
	}
	r.M[wLoad] = measure{Ops: int64(o.n), Ns: dt.Nanoseconds(), Bytes: userBytes}
	if ss, ok := s.(*simdrKV); ok {
		r.IndexBytes, r.IndexKeys = int64(ss.s.Stats().IndexBytes), int64(ss.s.Len())
	}
	if o.store.name == "file" {
		s.Close()
		s = nil
		r.FileBytes = diskUsage(o.dir)
		return nil
	}

	// Random Get, one goroutine, then GOMAXPROCS goroutines.
	get := func(lo, hi int) error {
		var kb [keyLen]byte
		for _, i := range d.perm[lo:hi] {
			n, h, err := s.Get(d.key(int(i), kb[:]))
			if err != nil {
				return fmt.Errorf("key %d: %w", i, err)
			}
			if n != o.size || h != d.head(int(i)) {
				return fmt.Errorf("key %d: got %d bytes, head %x, want %d, %x", i, n, h, o.size, d.head(int(i)))
			}
		}
		return nil
	}
	maj := majorFaults()
	err = o.profiled(wGet1, func() error {
		dt, err = timed(func() error { return get(0, o.n) })
		return err
	})
	if err != nil {
		return fmt.Errorf("get: %w", err)
	}
	r.M[wGet1] = measure{Ops: int64(o.n), Ns: dt.Nanoseconds(), Major: majorFaults() - maj}
	maj = majorFaults()

	p := runtime.GOMAXPROCS(0)
	err = o.profiled(wGetP, func() error {
		dt, err = timed(func() error { return parallel(p, o.n, get) })
		return err
	})
	if err != nil {
		return fmt.Errorf("parallel get: %w", err)
	}
	r.M[wGetP] = measure{Ops: int64(o.n), Ns: dt.Nanoseconds(), Major: majorFaults() - maj}

	// Reopen: Close, Open, first Get; between them (not timed with them), one
	// sequential read of the store's files.
	if o.store.name != "map" {
		var kb [keyLen]byte
		first := int(d.perm[0])
		var closeT, openT time.Duration
		closeT, err = timed(s.Close)
		s = nil
		if err != nil {
			return fmt.Errorf("reopen: close: %w", err)
		}
		r.FileBytes = diskUsage(o.dir)
		var nb int64
		dt, err = timed(func() error { nb, err = readDir(o.dir); return err })
		if err != nil {
			return fmt.Errorf("sequential read: %w", err)
		}
		err = o.profiled(wReopen, func() error {
			openT, err = timed(func() error {
				if s, err = o.store.open(o.dir); err != nil {
					return err
				}
				n, _, err := s.Get(d.key(first, kb[:]))
				if err == nil && n != o.size {
					err = fmt.Errorf("first get after reopen: %d bytes", n)
				}
				return err
			})
			return err
		})
		if err != nil {
			return fmt.Errorf("reopen: %w", err)
		}
		r.M[wReopen] = measure{Ops: 1, Ns: (closeT + openT).Nanoseconds()}
		r.M[wClose] = measure{Ops: 1, Ns: closeT.Nanoseconds()}
		if ss, ok := s.(*simdrKV); ok {
			r.IndexBytesReo = int64(ss.s.Stats().IndexBytes)
		}
		r.M[wSeqRead] = measure{Ops: 1, Ns: dt.Nanoseconds(), Bytes: nb}
	}

	// Mixed: 90 % Get, 10 % Put (a new value for an existing key).
	if c, ok := s.(concurrent); ok {
		c.setConcurrent()
	}
	mixed := func(lo, hi int) error {
		var kb [keyLen]byte
		for j := lo; j < hi; j++ {
			i := int(d.perm[j])
			k := d.key(i, kb[:])
			if j%10 == 9 {
				if err := s.Put(k, d.value(i, 1)); err != nil {
					return fmt.Errorf("put key %d: %w", i, err)
				}
				continue
			}
			n, _, err := s.Get(k)
			if err != nil {
				return fmt.Errorf("key %d: %w", i, err)
			}
			if n != o.size {
				return fmt.Errorf("key %d: got %d bytes, want %d", i, n, o.size)
			}
		}
		return nil
	}
	err = o.profiled(wMixed, func() error {
		dt, err = timed(func() error { return parallel(p, o.n, mixed) })
		return err
	})
	if err != nil {
		return fmt.Errorf("mixed: %w", err)
	}
	r.M[wMixed] = measure{Ops: int64(o.n), Ns: dt.Nanoseconds()}
	err = s.Close()
	s = nil
	if err != nil || !o.cold || o.store.name == "map" {
		return err
	}
	return runCold(o, d, r)
}

// runCold times reads of the closed store from a cold page cache: Open and
// the first Get, then, in each of coldRounds rounds, k random Gets after
// an Open of the evicted files (the Open untimed), one in turn with k
// random 4 KiB preads of the files Open left cold. A Get's value may be the
// mixed workload's (same length), so only its length is checked.
func runCold(o *childOpts, d *dataset, r *result) error {
	if err := evictDir(o.dir); err != nil {
		return fmt.Errorf("cold: %w", err)
	}
	var kb [keyLen]byte
	get := func(s kv, i int) error {
		n, _, err := s.Get(d.key(i, kb[:]))
		if err == nil && n != o.size {
			err = fmt.Errorf("key %d: %d bytes, want %d", i, n, o.size)
		}
		return err
	}
	var s kv
	dt, err := timed(func() error {
		var err error
		if s, err = o.store.open(o.dir); err != nil {
			return err
		}
		return get(s, int(d.perm[0]))
	})
	if err != nil {
		return fmt.Errorf("cold reopen: %w", err)
	}
	r.M[wColdReopen] = measure{Ops: 1, Ns: dt.Nanoseconds()}
	if err := s.Close(); err != nil {
		return err
	}
	rnd := rand.New(rand.NewPCG(o.seed, 0xc01d))
	for _, k := range coldGets {
		var gm, pm measure
		var lg, lp []int64 // each Get's and pread's ns
		for range coldRounds {
			if err := evictDir(o.dir); err != nil {
				return err
			}
			s, err := o.store.open(o.dir)
			if err != nil {
				return err
			}
			// The preads read the files Open left cold (not a checkpoint or
			// index file it read whole), one in turn with each Get, each
			// first in turn: both see the disk as Open left it.
			files, err := dirFiles(o.dir, true)
			if err != nil {
				// A store small enough that Open read all of it (the CI
				// smoke run): pread whatever it has.
				files, err = dirFiles(o.dir, false)
			}
			if err == nil {
				err = files.open()
			}
			for j := 0; j < k && err == nil; j++ {
				for step := 0; step < 2 && err == nil; step++ {
					if (j+step)%2 == 1 {
						var ns int64
						ns, err = files.pread(rnd)
						lp = append(lp, ns)
						pm.Ns += ns
						continue
					}
					r0 := readBytes()
					t0 := time.Now()
					err = get(s, rnd.IntN(o.n))
					ns := time.Since(t0).Nanoseconds()
					gm.Bytes += readBytes() - r0
					lg = append(lg, ns)
					gm.Ns += ns
				}
			}
			files.close()
			s.Close()
			if err != nil {
				return fmt.Errorf("%d cold gets: %w", k, err)
			}
		}
		gm.Ops, pm.Ops = int64(len(lg)), int64(len(lp))
		gm.P50, pm.P50 = medianNs(lg), medianNs(lp)
		r.M[fmt.Sprint(wCold, k)] = gm
		r.M[fmt.Sprint(wPread, k)] = pm
	}
	return nil
}

// fileSet is a store's files, for random preads over all of their bytes.
type fileSet struct {
	paths []string
	sizes []int64
	total int64
	fds   []*os.File
	buf   []byte
}

// dirFiles returns the files under dir of a page or more; when cold, only
// those of which less than half is in the page cache.
func dirFiles(dir string, cold bool) (*fileSet, error) {
	set := &fileSet{buf: make([]byte, preadBytes)}
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil // removed while walked (a store compacting its files)
		}
		if err != nil || !fi.Mode().IsRegular() || fi.Size() < preadBytes {
			return err
		}
		if cold {
			f, err := os.Open(p)
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			if err != nil {
				return err
			}
			n, err := cachedPages(f, fi.Size())
			f.Close()
			if err != nil {
				return err
			}
			if n*int64(os.Getpagesize())*2 >= fi.Size() {
				return nil
			}
		}
		set.paths, set.sizes = append(set.paths, p), append(set.sizes, fi.Size())
		set.total += fi.Size()
		return nil
	})
	if err == nil && set.total == 0 {
		err = fmt.Errorf("no cold file of %d bytes or more in %s", preadBytes, dir)
	}
	return set, err
}

const preadBytes = 4096

func (fs *fileSet) open() error {
	for _, p := range fs.paths {
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		fs.fds = append(fs.fds, f)
	}
	return nil
}

func (fs *fileSet) close() {
	for _, f := range fs.fds {
		f.Close()
	}
	fs.fds = nil
}

// pread reads a random aligned 4 KiB block of a file picked in proportion
// to its size, and returns the time it took.
func (fs *fileSet) pread(rnd *rand.Rand) (int64, error) {
	at := rnd.Int64N(fs.total)
	i := 0
	for at >= fs.sizes[i] {
		at -= fs.sizes[i]
		i++
	}
	at = min(at, fs.sizes[i]-preadBytes) &^ (preadBytes - 1)
	t0 := time.Now()
	_, err := fs.fds[i].ReadAt(fs.buf, at)
	return time.Since(t0).Nanoseconds(), err
}

// medianNs returns the median of v (sorted in place), 0 for none.
func medianNs(v []int64) int64 {
	if len(v) == 0 {
		return 0
	}
	slices.Sort(v)
	return v[len(v)/2]
}

// parallel splits [0,n) into p contiguous parts and runs fn on each at once.
func parallel(p, n int, fn func(lo, hi int) error) error {
	var wg sync.WaitGroup
	errs := make([]error, p)
	for g := 0; g < p; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[g] = fn(g*n/p, (g+1)*n/p)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// poolReader yields n bytes cut from the pool, as a stream.
type poolReader struct {
	pool []byte
	left int64
	off  int
}

func (p *poolReader) Read(b []byte) (int, error) {
	if p.left == 0 {
		return 0, io.EOF
	}
	if int64(len(b)) > p.left {
		b = b[:p.left]
	}
	n := 0
	for n < len(b) {
		c := copy(b[n:], p.pool[p.off:])
		n += c
		if p.off += c; p.off == len(p.pool) {
			p.off = 0
		}
	}
	p.left -= int64(n)
	return n, nil
}

// runBig streams one big value in and out of a store that supports it.
func runBig(o *childOpts, r *result) error {
	d := newDataset(1, 8, o.seed)
	runtime.GC()
	r.SetupAnon = readMem().anon
	mem := startSampler()
	defer func() { r.PeakAnon, r.HWM = mem.stop() }()
	s, err := o.store.open(o.dir)
	if err != nil {
		return err
	}
	defer s.Close()
	st, ok := s.(streamer)
	if !ok {
		return errNA
	}
	key := []byte("big-value")
	in := &crcWriter{}
	var n int64
	dt, err := timed(func() error {
		n, err = st.PutStream(key, io.TeeReader(&poolReader{pool: d.pool[:poolBytes], left: o.big}, in))
		return err
	})
	if err != nil {
		return fmt.Errorf("stream in: %w", err)
	}
	if n != o.big {
		return fmt.Errorf("stream in: stored %d bytes, want %d", n, o.big)
	}
	r.M[wBigIn] = measure{Ops: 1, Ns: dt.Nanoseconds(), Bytes: n}
	r.FileBytes = diskUsage(o.dir)
	out := &crcWriter{}
	dt, err = timed(func() error { n, err = st.GetStream(key, out); return err })
	if err != nil {
		return fmt.Errorf("stream out: %w", err)
	}
	if n != o.big || out.crc != in.crc {
		return fmt.Errorf("stream out: %d bytes, crc %08x, want %d, %08x", n, out.crc, o.big, in.crc)
	}
	r.M[wBigOut] = measure{Ops: 1, Ns: dt.Nanoseconds(), Bytes: n}
	return nil
}

// readDir reads every file under dir once, sequentially, with 1 MiB reads,
// and returns how many bytes it read.
func readDir(dir string) (int64, error) {
	buf := make([]byte, 1<<20)
	var total int64
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || !fi.Mode().IsRegular() {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		for {
			n, err := f.Read(buf)
			total += int64(n)
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
		}
	})
	return total, err
}
