package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// isTerminal reports whether f is a terminal.
func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// termWidth returns the width of the terminal f, or 80.
func termWidth(f *os.File) int {
	ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ)
	if err != nil || ws.Col < 20 {
		return 80
	}
	return int(ws.Col)
}

// progress draws a progress bar on stderr, redrawn a few times a second, when
// stderr is a terminal and --quiet is off; otherwise it does nothing.
type progress struct {
	on    bool
	f     *os.File
	label string
	total int64        // <= 0: unknown, a counter is shown instead of a bar
	done  atomic.Int64 // bytes (or items) done
	items atomic.Int64 // files done, for import and export
	nitem int64
	poll  func() int64 // when set, called before each redraw for done (-1: unknown)
	t0    time.Time
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

// start begins redrawing.
func (p *progress) start() {
	if !p.on {
		return
	}
	p.t0 = time.Now()
	p.stop = make(chan struct{})
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		t := time.NewTicker(150 * time.Millisecond)
		defer t.Stop()
		for {
			p.draw()
			select {
			case <-p.stop:
				return
			case <-t.C:
			}
		}
	}()
}

// add records n more bytes done.
func (p *progress) add(n int64) { p.done.Add(n) }

// finish stops redrawing and clears the line.
func (p *progress) finish() {
	if !p.on || p.stop == nil {
		return
	}
	close(p.stop)
	p.wg.Wait()
	p.stop = nil
	fmt.Fprint(p.f, "\r\x1b[K")
}

func (p *progress) draw() {
	done := p.done.Load()
	if p.poll != nil {
		if d := p.poll(); d >= 0 {
			done = d
		}
	}
	el := time.Since(p.t0).Truncate(100 * time.Millisecond)
	var right string
	if p.nitem > 0 {
		right = fmt.Sprintf(" %d/%d files", p.items.Load(), p.nitem)
	}
	width := termWidth(p.f)
	var line string
	if p.total > 0 {
		done = min(done, p.total)
		pct := float64(done) / float64(p.total)
		tail := fmt.Sprintf(" %3.0f%% %s/%s%s %s", pct*100, formatBytes(done), formatBytes(p.total), right, el)
		barW := width - len(p.label) - len(tail) - 4
		if barW > 50 {
			barW = 50
		}
		bar := ""
		if barW >= 10 {
			full := int(pct * float64(barW))
			bar = " [" + strings.Repeat("=", full) + strings.Repeat(" ", barW-full) + "]"
		}
		line = p.label + bar + tail
	} else {
		spin := `-\|/`[int(el/(150*time.Millisecond))%4]
		line = fmt.Sprintf("%s %c %s%s %s", p.label, spin, formatBytes(done), right, el)
	}
	if len(line) > width-1 {
		line = line[:width-1]
	}
	fmt.Fprint(p.f, "\r"+line+"\x1b[K")
}

// formatBytes is the Rust original's format: bytes below 1 KiB, then two
// decimals of KB, MB or GB (powers of 1024).
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
	return fmt.Sprintf("%d bytes", n)
}

// formatBytesExact is formatBytes with the exact count beside rounded figures.
func formatBytesExact(n int64) string {
	s := formatBytes(n)
	if n >= 1<<10 {
		s += fmt.Sprintf(" (%d bytes)", n)
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
