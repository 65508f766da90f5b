package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// isTerminal reports whether f is a terminal.
func isTerminal(f *os.File) bool { return term.IsTerminal(int(f.Fd())) }

// progress shows a progress bar (github.com/schollz/progressbar) on stderr,
// updated a few times a second from counters the work increments, when stderr
// is a terminal and --quiet is off; otherwise it does nothing. The counters
// are atomic, so the work never waits for the drawing.
type progress struct {
	on    bool
	f     *os.File
	label string
	total int64        // <= 0: unknown, a spinner and a byte count instead of a bar
	done  atomic.Int64 // bytes done
	items atomic.Int64 // files done, for import and export
	nitem int64
	poll  func() int64 // when set, called before each update for done (-1: unknown)
	bar   *progressbar.ProgressBar
	stop  chan struct{}
	wg    sync.WaitGroup
}

func (a *app) newProgress(label string, total int64) *progress {
	return &progress{
		on:    !a.o.quiet && isTerminal(a.stderr),
		f:     a.stderr,
		label: label,
		total: total,
	}
}

// start shows the bar and begins updating it.
func (p *progress) start() {
	if !p.on || p.stop != nil {
		return
	}
	max := p.total
	if max <= 0 {
		max = -1 // a spinner
	}
	width := progressbar.OptionFullWidth()
	if w, _, err := term.GetSize(int(p.f.Fd())); err != nil || w < 40 {
		width = progressbar.OptionSetWidth(20) // a terminal of unknown size
	}
	opts := []progressbar.Option{
		width,
		progressbar.OptionSetWriter(p.f),
		progressbar.OptionSetDescription(p.describe()),
		progressbar.OptionShowBytes(true),
		progressbar.OptionUseIECUnits(true),
		progressbar.OptionUseANSICodes(true),
		progressbar.OptionSetElapsedTime(true),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionClearOnFinish(),
		progressbar.OptionSetRenderBlankState(true),
		progressbar.OptionThrottle(100 * time.Millisecond),
		// No redrawing goroutine of the library's own (for a spinner it
		// would go on drawing after finish): the ticker below redraws.
		progressbar.OptionSetSpinnerChangeInterval(0),
	}
	if max < 0 {
		opts = append(opts, progressbar.OptionShowCount()) // redraw on every update
	}
	p.bar = progressbar.NewOptions64(max, opts...)
	p.stop = make(chan struct{})
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		t := time.NewTicker(150 * time.Millisecond)
		defer t.Stop()
		for {
			p.update()
			select {
			case <-p.stop:
				return
			case <-t.C:
			}
		}
	}()
}

// describe is the bar's label, with the count of files when there is one.
func (p *progress) describe() string {
	if p.nitem > 0 {
		return fmt.Sprintf("%s %d/%d %s", p.label, p.items.Load(), p.nitem, pluralNoun(p.nitem, "file"))
	}
	return p.label
}

func (p *progress) update() {
	done := p.done.Load()
	if p.poll != nil {
		if d := p.poll(); d >= 0 {
			done = d
		}
	}
	if p.total > 0 {
		done = min(done, p.total-1) // the bar reaching its max would end it: finish does
	}
	if p.nitem > 0 {
		p.bar.Describe(p.describe())
	}
	p.bar.Set64(done)
}

// add records n more bytes done.
func (p *progress) add(n int64) { p.done.Add(n) }

// finish stops updating and clears the bar's line, so that what follows
// starts a clean line. It may be called more than once, and start again after.
func (p *progress) finish() {
	if !p.on || p.stop == nil {
		return
	}
	close(p.stop)
	p.wg.Wait()
	p.stop = nil
	p.bar.Clear()
	p.bar.Exit()
	p.bar = nil
}

// pluralNoun is noun, in the plural unless n is 1 (entry: entries,
// batch: batches, file: files).
func pluralNoun(n int64, noun string) string {
	switch {
	case n == 1:
		return noun
	case strings.HasSuffix(noun, "y") && !strings.ContainsRune("aeiou", rune(noun[len(noun)-2])):
		return noun[:len(noun)-1] + "ies"
	case strings.HasSuffix(noun, "ch"), strings.HasSuffix(noun, "s"):
		return noun + "es"
	}
	return noun + "s"
}

// countUnit formats n and noun: "1 file", "2 files".
func countUnit(n int64, what string) string { return fmt.Sprintf("%d %s", n, pluralNoun(n, what)) }

// formatBytes is the Rust original's format: bytes below 1 KiB ("1 byte",
// "2 bytes"), then two decimals of KB, MB or GB (powers of 1024).
func formatBytes(n int64) string {
	const kb, mb, gb = 1 << 10, 1 << 20, 1 << 30
	switch {
	case n >= gb:
		return fmt.Sprintf("%.2f GB", float64(n)/gb)
	case n >= mb:
		return fmt.Sprintf("%.2f MB", float64(n)/mb)
	case n >= kb:
		return fmt.Sprintf("%.2f KB", float64(n)/kb)
	}
	return countUnit(n, "byte")
}

// formatBytesExact is formatBytes with the exact count beside rounded figures.
func formatBytesExact(n int64) string {
	s := formatBytes(n)
	if n >= 1<<10 {
		s += " (" + countUnit(n, "byte") + ")"
	}
	return s
}

// parseSize parses a byte count with an optional unit, as the Rust original's
// --buffer-size does: 1024, 64K, 64KB, 1M, 1MB, 2G, 2GB (powers of 1024; case
// does not matter). KiB, MiB and GiB are accepted too.
func parseSize(s string) (int64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	i := strings.IndexFunc(t, func(r rune) bool { return r < '0' || r > '9' })
	if i < 0 {
		i = len(t)
	}
	num, unit := t[:i], strings.TrimSpace(t[i:])
	mult := int64(1)
	switch unit {
	case "", "b":
	case "k", "kb", "kib":
		mult = 1 << 10
	case "m", "mb", "mib":
		mult = 1 << 20
	case "g", "gb", "gib":
		mult = 1 << 30
	case "t", "tb", "tib":
		mult = 1 << 40
	default:
		return 0, fmt.Errorf("invalid size %q: unknown unit %q", s, unit)
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("invalid size %q", s)
	}
	return n * mult, nil
}
