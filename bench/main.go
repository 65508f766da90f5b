// Command bench is simdr's comparative benchmark harness: simdr against
// go.etcd.io/bbolt, github.com/akrylysov/pogreb, github.com/dgraph-io/badger/v4
// and github.com/cockroachdb/pebble/v2, next to two baselines that mark the
// physical limit (a Go map holding the same values, and one plain file written
// sequentially then fsynced), on the same data, one store after the other.
//
// Run it from this folder:
//
//	go run .                      # the full run: 1,000,000 × 100 B and 100,000 × 4 KiB, 1 GiB streamed, 3 runs
//	go run . -quick               # a tenth of the sizes, 64 MiB streamed, 1 run
//	go run . -n 2000 -size 100 -runs 1 -big 4MiB -out /tmp/b.md
//	go run . -scale               # 10,000,000 × 100 B: simdr, map, file, pogreb, bbolt (about 30 minutes)
//	go run . -huge                # 100,000,000 × 100 B: simdr, map, file (about 13 GB of disk, 16 GB of memory, an hour)
//
// It writes a Markdown report (-out, by default ../docs/benchmarks.md) and a
// chart of the headline figures beside it (the same name, .svg). With
// -section (implied by -scale and -huge), each data shape's tables replace
// only their own marked section of -out, and its chart goes beside it as
// <name>-<shape>.svg (benchmarks-10m.svg), so that one shape can be run again
// on its own. A whole report keeps what follows the line keepMarker in the
// file it replaces.
//
// After the warm workloads, the cold ones (-cold, on by default) time Open
// and random Gets with the store's files evicted from the page cache
// (POSIX_FADV_DONTNEED on each file: no root needed, and the rest of the
// machine's cache is left alone), next to random 4 KiB preads of the same
// files evicted the same way.
//
// Each store runs in a child process of this same program (one store, one size,
// one run at a time, strictly one after the other), so that each gets a fresh
// heap and its peak memory can be read from the kernel. Between children the
// harness syncs the file systems, so that no store pays for another's
// write-back; each run starts with the next store in the list; and before
// the timed runs of each data shape, one warm-up run of the first store is
// made and thrown away.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// sizeSet is one data shape, and the stores run on it (nil: all of -stores).
type sizeSet struct {
	n, size int
	only    []string
}

func (s sizeSet) String() string {
	return fmt.Sprintf("%s × %s", commas(int64(s.n)), bytesLabel(s.size))
}

// has reports whether the store named runs on this data shape.
func (s sizeSet) has(name string) bool { return s.only == nil || slices.Contains(s.only, name) }

// label is a short name of the data shape for file names and section
// markers: 10m, 100k-4kib.
func (s sizeSet) label() string {
	n := fmt.Sprint(s.n)
	switch {
	case s.n%1_000_000 == 0:
		n = fmt.Sprintf("%dm", s.n/1_000_000)
	case s.n%1000 == 0:
		n = fmt.Sprintf("%dk", s.n/1000)
	}
	if s.size != 100 {
		n += "-" + strings.ToLower(strings.ReplaceAll(bytesLabel(s.size), " ", ""))
	}
	return n
}

// The large data shapes (issue 17): -scale runs the first, -huge the second.
var (
	scaleSet = sizeSet{n: 10_000_000, size: 100, only: []string{"simdr", "map", "file", "pogreb", "bbolt"}}
	hugeSet  = sizeSet{n: 100_000_000, size: 100, only: []string{"simdr", "map", "file"}}
)

func bytesLabel(n int) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d B", n)
}

// parseBytes reads 123, 4KiB, 64MiB, 1GiB (also KB/MB/GB, K/M/G, as powers of 1024).
func parseBytes(s string) (int64, error) {
	t := strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range []struct {
		suf string
		m   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"GB", 1 << 30}, {"MB", 1 << 20}, {"KB", 1 << 10}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}, {"B", 1}} {
		if strings.HasSuffix(t, u.suf) {
			t, mult = strings.TrimSuffix(t, u.suf), u.m
			break
		}
	}
	v, err := strconv.ParseInt(strings.TrimSpace(t), 10, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("bad size %q", s)
	}
	return v * mult, nil
}

const childEnv = "SIMDR_BENCH_CHILD"

func main() {
	var (
		n          = flag.Int("n", 0, "number of keys (0: the standard sizes, 1,000,000 × 100 B and 100,000 × 4 KiB)")
		size       = flag.Int("size", 0, "value size in bytes (with -n; default 100)")
		runs       = flag.Int("runs", 0, "runs of each store; each figure is the median (default 3, 1 with -quick)")
		storesF    = flag.String("stores", "simdr,map,file,bbolt,pogreb,badger,pebble", "stores to run, comma-separated")
		bigF       = flag.String("big", "", "size of the value streamed in and out (default 1GiB, 64MiB with -quick; 0 skips)")
		out        = flag.String("out", "../docs/benchmarks.md", "Markdown report to write (the chart goes beside it, .svg)")
		quick      = flag.Bool("quick", false, "a tenth of the standard sizes, 64 MiB streamed, 1 run")
		dirF       = flag.String("dir", "", "directory for the stores' files (default: the system temp dir)")
		seed       = flag.Uint64("seed", 1, "seed of the data and of the read order")
		profile    = flag.String("profile", "", "workload to CPU-profile: load, get1, getP, reopen, mixed, bigin")
		cpuprofile = flag.String("cpuprofile", "", "CPU profile file prefix (with -profile): <prefix>.<store>.<n>x<size>.<run>.pprof (run 0 is the warm-up)")
		timeout    = flag.Duration("timeout", 20*time.Minute, "time limit of one store's run")
		warmup     = flag.Bool("warmup", true, "make one discarded warm-up run of the first store before the timed runs of each data shape (default false with -scale and -huge)")
		cold       = flag.Bool("cold", true, "also time Open and random Gets from a cold page cache (the store's files evicted)")
		scale      = flag.Bool("scale", false, "run "+scaleSet.String()+" with "+strings.Join(scaleSet.only, ", ")+", 1 run (-section; -big 0; -timeout 45m)")
		huge       = flag.Bool("huge", false, "run "+hugeSet.String()+" with "+strings.Join(hugeSet.only, ", ")+", 1 run (-section; -big 0; -timeout 90m): about 13 GB of disk and 16 GB of memory")
		section    = flag.Bool("section", false, "write each data shape into its own marked section of -out, keeping the rest of the file")
		// Child mode (set by the parent).
		childMode = flag.String("child", "", "internal: run one store's workloads (kv or big) and print JSON")
		childSt   = flag.String("store", "", "internal: the child's store")
		childDir  = flag.String("childdir", "", "internal: the child's directory")
	)
	flag.Parse()

	if *childMode != "" {
		if os.Getenv(childEnv) != "1" {
			fatalf("-child is internal to the harness")
		}
		big, _ := parseBytes(*bigF)
		os.Exit(child(*childMode, *childSt, *childDir, *n, *size, big, *seed, *profile, *cpuprofile, *cold))
	}
	set := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { set[f.Name] = true })

	var sets []sizeSet
	switch {
	case *scale || *huge:
		if *scale {
			sets = append(sets, scaleSet)
		}
		if *huge {
			sets = append(sets, hugeSet)
		}
		*section = true
		if !set["runs"] {
			*runs = 1
		}
		if !set["warmup"] {
			*warmup = false
		}
		if !set["big"] {
			*bigF = "0"
		}
		if !set["timeout"] {
			*timeout = 45 * time.Minute
			if *huge {
				*timeout = 90 * time.Minute
			}
		}
	case *n > 0:
		sz := *size
		if sz == 0 {
			sz = 100
		}
		sets = []sizeSet{{n: *n, size: sz}}
	case *quick:
		sets = []sizeSet{{n: 100_000, size: 100}, {n: 10_000, size: 4096}}
	default:
		sets = []sizeSet{{n: 1_000_000, size: 100}, {n: 100_000, size: 4096}}
	}
	for _, s := range sets {
		if s.size < 8 {
			fatalf("-size must be at least 8 bytes")
		}
	}
	if *runs <= 0 {
		*runs = 3
		if *quick {
			*runs = 1
		}
	}
	if *bigF == "" {
		*bigF = "1GiB"
		if *quick {
			*bigF = "64MiB"
		}
	}
	big, err := parseBytes(*bigF)
	if err != nil {
		fatalf("-big: %v", err)
	}
	var stores []storeDef
	for _, name := range strings.Split(*storesF, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		s, ok := findStore(name)
		if !ok {
			fatalf("unknown store %q", name)
		}
		stores = append(stores, s)
	}
	slices.SortStableFunc(stores, func(a, b storeDef) int { return storeRank(a.name) - storeRank(b.name) })

	base := *dirF
	if base == "" {
		base = os.TempDir()
	}
	tmp, err := os.MkdirTemp(base, "simdr-bench-")
	if err != nil {
		fatalf("%v", err)
	}
	defer os.RemoveAll(tmp)
	exe, err := os.Executable()
	if err != nil {
		fatalf("%v", err)
	}

	start := time.Now()
	load0 := loadAvg()
	rep := &report{args: os.Args[1:], sets: sets, stores: stores, runs: *runs, warmup: *warmup, cold: *cold, big: big, results: map[string][]result{}, setTime: map[string]time.Duration{}, machine: describeMachine(tmp)}
	runChild := func(mode string, st storeDef, set sizeSet, run int) {
		dir := filepath.Join(tmp, fmt.Sprintf("%s-%d", st.name, run+1))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			fatalf("%v", err)
		}
		defer func() {
			os.RemoveAll(dir)
			// Leave no dirty pages of this store to be written back during the next one.
			syscall.Sync()
		}()
		syscall.Sync()
		args := []string{"-child", mode, "-store", st.name, "-childdir", dir,
			"-n", strconv.Itoa(set.n), "-size", strconv.Itoa(set.size), "-big", strconv.FormatInt(big, 10),
			"-seed", strconv.FormatUint(*seed, 10), "-cold=" + strconv.FormatBool(*cold)}
		if *cpuprofile != "" && *profile != "" {
			args = append(args, "-profile", *profile, "-cpuprofile",
				fmt.Sprintf("%s.%s.%dx%d.%d.pprof", *cpuprofile, st.name, set.n, set.size, run+1))
		}
		cmd := exec.Command(exe, args...)
		cmd.Env = append(os.Environ(), childEnv+"=1")
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		t0 := time.Now()
		if err := cmd.Start(); err != nil {
			fatalf("%v", err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		var werr error
		select {
		case werr = <-done:
		case <-time.After(*timeout):
			cmd.Process.Kill()
			werr = fmt.Errorf("timed out after %v", *timeout)
			<-done
		}
		var r result
		if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
			r = result{Store: st.name, N: set.n, Size: set.size, Err: fmt.Sprintf("child failed: %v: %s", werr, lastLines(stderr.String(), 5))}
		}
		status := "ok"
		if r.Err != "" {
			status = "FAILED: " + r.Err
		}
		runLabel := fmt.Sprintf("run %d/%d", run+1, *runs)
		if run < 0 {
			runLabel = "warm-up"
		} else {
			key := resultKey(mode, set)
			rep.results[key] = append(rep.results[key], r)
		}
		rep.setTime[set.label()] += time.Since(t0)
		fmt.Fprintf(os.Stderr, "  %-7s %-28s %-8s %6.1fs  %s\n", st.name, mode+" "+set.String(), runLabel, time.Since(t0).Seconds(), status)
	}

	for _, set := range sets {
		fmt.Fprintf(os.Stderr, "== %s\n", set)
		var these []storeDef
		for _, st := range stores {
			if set.has(st.name) {
				these = append(these, st)
			}
		}
		if len(these) == 0 {
			continue
		}
		if *warmup {
			runChild("kv", these[0], set, -1)
		}
		for run := 0; run < *runs; run++ {
			for _, st := range rotate(these, run) {
				runChild("kv", st, set, run)
			}
		}
	}
	if big > 0 {
		bigSet := sizeSet{n: 1, size: int(big)}
		fmt.Fprintf(os.Stderr, "== one %s value streamed in and out\n", bytesLabel(int(big)))
		for _, st := range stores {
			if st.name == "simdr" || st.name == "file" {
				runChild("big", st, bigSet, -1)
				break
			}
		}
		for run := 0; run < *runs; run++ {
			for _, st := range rotate(stores, run) {
				if st.name == "simdr" || st.name == "file" {
					runChild("big", st, bigSet, run)
				}
			}
		}
	}
	rep.elapsed = time.Since(start)
	rep.loadBefore, rep.loadAfter = load0, loadAvg()

	if err := os.MkdirAll(filepath.Dir(*out), 0o755); err != nil {
		fatalf("%v", err)
	}
	old, err := os.ReadFile(*out)
	if err != nil && !os.IsNotExist(err) {
		fatalf("%v", err)
	}
	outBase := strings.TrimSuffix(*out, filepath.Ext(*out))
	var md, verdicts string
	svgs := map[string]string{} // path → chart
	if *section {
		md = string(old)
		var vb strings.Builder
		for _, set := range sets {
			svgPath := outBase + "-" + set.label() + ".svg"
			body, svg, v := rep.renderSection(set, filepath.Base(svgPath))
			md = replaceSection(md, set.label(), body)
			svgs[svgPath] = svg
			vb.WriteString(v)
		}
		verdicts = vb.String()
	} else {
		var svg string
		md, svg, verdicts = rep.render(filepath.Base(outBase + ".svg"))
		md = keepTail(md, string(old))
		svgs[outBase+".svg"] = svg
	}
	if err := os.WriteFile(*out, []byte(md), 0o644); err != nil {
		fatalf("%v", err)
	}
	var wrote []string
	for p, svg := range svgs {
		if err := os.WriteFile(p, []byte(svg), 0o644); err != nil {
			fatalf("%v", err)
		}
		wrote = append(wrote, p)
	}
	slices.Sort(wrote)
	fmt.Println(verdicts)
	fmt.Printf("wrote %s and %s in %s\n", *out, strings.Join(wrote, ", "), rep.elapsed.Round(time.Second))
	if rep.failures > 0 {
		fmt.Fprintf(os.Stderr, "%d store runs failed (see the report)\n", rep.failures)
		os.Exit(1)
	}
}

// rotate returns stores starting at the run-th one (wrapping around), so
// that no store always runs right after the same other one.
func rotate(stores []storeDef, run int) []storeDef {
	k := run % len(stores)
	return append(slices.Clone(stores[k:]), stores[:k]...)
}

func resultKey(mode string, s sizeSet) string { return fmt.Sprintf("%s/%d/%d", mode, s.n, s.size) }

func storeRank(name string) int {
	for i, s := range allStores {
		if s.name == name {
			return i
		}
	}
	return len(allStores)
}

// child runs one store's workloads and prints the result as JSON.
func child(mode, store, dir string, n, size int, big int64, seed uint64, profile, cpuprofile string, cold bool) int {
	st, ok := findStore(store)
	if !ok {
		fatalf("unknown store %q", store)
	}
	o := &childOpts{store: st, n: n, size: size, big: big, dir: dir, seed: seed, profile: profile, cpuprofile: cpuprofile, cold: cold}
	r := result{Store: store, N: n, Size: size, M: map[string]measure{}}
	var err error
	switch mode {
	case "kv":
		err = runKV(o, &r)
	case "big":
		err = runBig(o, &r)
	default:
		err = fmt.Errorf("unknown child mode %q", mode)
	}
	if err != nil {
		r.Err = err.Error()
	}
	json.NewEncoder(os.Stdout).Encode(&r)
	return 0
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
	os.Exit(2)
}
