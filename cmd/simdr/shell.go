package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"unicode"

	"github.com/chzyer/readline"

	"github.com/simdr-go/simdr"
)

var cmdShell = &command{
	name: "shell", args: "",
	summary: "an interactive prompt (or commands read line by line from stdin)",
	help: `
Opens FILE once (for writing, created if missing; read-only when another
process, such as 'simdr serve', is writing to it) and runs commands on it
until end of input, "exit" or "quit":
    get KEY            print the value of KEY and a newline (alias: read)
    put KEY VALUE      store VALUE under KEY (alias: write); with
      [--ttl DURATION] --ttl, to expire DURATION from now (10m, 24h)
    delete KEY         delete KEY
    has KEY            print true or false
    ttl KEY            print how long KEY has left, or "no expiry"
    list               the key hash, size and offset of every live entry
    info               the file's size, live keys, tombstones, reclaimable bytes
    help               this list
KEY and VALUE are words; quote them to hold spaces or any byte: "a b\n\x00"
(Go string syntax, with escapes) or 'a b' (as written).

When stdin is a terminal the prompt has line editing (arrows, Ctrl-A/E/K/W,
Ctrl-R to search the history) and a history kept in ~/.simdr_history (mode 0600)
($SIMDR_HISTORY names another file; empty for none), and tab completes command
names. Otherwise the commands are read line by line from stdin, with no prompt:
  printf 'put k v\nget k\n' | simdr data.simdr shell
A failing command prints its error (on stderr, with its line number when read
from stdin) and the shell goes on; read from stdin, the shell then exits 1.`,
	examples: []string{
		`simdr data.simdr shell`,
		`printf 'put k v\nget k\n' | simdr data.simdr shell`,
	},
	minArgs: 0, maxArgs: 0,
	run: runShell,
}

// shellHelp is what the shell's help command prints.
const shellHelp = `get KEY            print the value of KEY (alias: read)
put KEY VALUE      store VALUE under KEY (alias: write)
put KEY VALUE --ttl DURATION
                   store VALUE to expire DURATION from now (90s, 10m, 24h)
delete KEY         delete KEY
has KEY            print true or false
ttl KEY            how long KEY's value has left, or "no expiry"
list               every live entry: key hash, size, offset
info               the file's size, live keys, tombstones, reclaimable bytes
help               this list
exit, quit         leave (so does Ctrl-D)
Quote words with spaces or other bytes: "a b\n" (Go syntax) or 'a b'.
`

func runShell(a *app, file string, _ []string) (err error) {
	s, err := a.openWrite(file, false)
	readOnly := false
	if errors.Is(err, simdr.ErrLocked) {
		if s, err = a.openRead(file); err == nil {
			readOnly = true
			a.warn("shell: %s is being written by another process: opened read-only", file)
		}
	}
	if err != nil {
		return err
	}
	defer closeStore(s, &err)
	if isTerminal(a.stdin) {
		return a.shellTerminal(s, file, readOnly)
	}
	failed := false
	br := bufio.NewReaderSize(a.stdin, 64<<10)
	for n := 1; ; n++ {
		line, rerr := readShellLine(br, shellMaxLine)
		if errors.Is(rerr, errLineTooLong) {
			a.warn("line %d: %v", n, rerr)
			failed = true
			continue
		}
		if rerr != nil && rerr != io.EOF {
			return fmt.Errorf("shell: reading stdin: %w", rerr)
		}
		if line != "" {
			quit, err := a.shellLine(s, file, line)
			if err != nil {
				a.warn("line %d: %s", n, describe(err))
				failed = true
			}
			if quit {
				break
			}
		}
		if rerr == io.EOF {
			break
		}
	}
	if failed {
		return errReported
	}
	return nil
}

// shellMaxLine bounds a line read by the shell from stdin (as batch bounds
// its lines): a longer one is skipped, whatever its length, and reported.
const shellMaxLine = batchMaxLine

// errLineTooLong is readShellLine's error for a line past its bound.
var errLineTooLong = fmt.Errorf("line longer than %s: skipped", formatBytes(shellMaxLine))

// readShellLine reads one line, its newline included, holding at most max
// bytes of it: a longer line is read to its end and dropped, and the error
// is errLineTooLong. At the end of input it returns what is left and io.EOF.
func readShellLine(br *bufio.Reader, max int) (string, error) {
	var buf []byte
	tooLong := false
	for {
		part, err := br.ReadSlice('\n')
		if !tooLong {
			if len(buf)+len(part) > max {
				tooLong, buf = true, nil
			} else {
				buf = append(buf, part...)
			}
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if tooLong {
			if err == nil {
				err = errLineTooLong
			} else if err == io.EOF {
				err = fmt.Errorf("%w (at the end of input)", errLineTooLong)
			}
			return "", err
		}
		return string(buf), err
	}
}

// shellTerminal runs the interactive prompt.
func (a *app) shellTerminal(s *simdr.Store, file string, readOnly bool) error {
	hist := os.Getenv("SIMDR_HISTORY")
	if _, set := os.LookupEnv("SIMDR_HISTORY"); !set {
		if home, err := os.UserHomeDir(); err == nil {
			hist = filepath.Join(home, ".simdr_history")
		}
	}
	if hist != "" {
		// A history that is not a regular file (a FIFO would block the
		// shell before its first prompt, a directory cannot hold it) is
		// not used; /dev/null is a way to have none.
		if fi, err := os.Stat(hist); err == nil && !fi.Mode().IsRegular() && hist != os.DevNull {
			a.warn("shell: history file %s is not a regular file (%s): no history kept", hist, fileKind(fi.Mode()))
			hist = ""
		}
	}
	if hist != "" {
		// The history holds the values typed: keep it private (readline
		// would create it readable by all).
		if f, err := os.OpenFile(hist, os.O_CREATE|os.O_WRONLY|os.O_APPEND|syscall.O_NONBLOCK, 0o600); err == nil {
			f.Close()
		}
	}
	var items []readline.PrefixCompleterInterface
	for _, c := range []string{"get", "put", "delete", "has", "ttl", "list", "info", "help", "exit", "quit"} {
		items = append(items, readline.PcItem(c))
	}
	prompt := "simdr> "
	if readOnly {
		prompt = "simdr (read-only)> "
	}
	rl, err := readline.NewEx(&readline.Config{
		Prompt:          prompt,
		HistoryFile:     hist,
		HistoryLimit:    1000,
		AutoComplete:    readline.NewPrefixCompleter(items...),
		InterruptPrompt: "^C",
		EOFPrompt:       "exit",
		Stdin:           a.stdin,
		Stdout:          a.stdout,
		Stderr:          a.stderr,
	})
	if err != nil {
		return fmt.Errorf("shell: %w", err)
	}
	defer rl.Close()
	fmt.Fprintf(a.stdout, "simdr shell on %s: %s. Type help for the commands, Ctrl-D to leave.\n", file, countUnit(int64(s.Len()), "key"))
	for {
		line, err := rl.Readline()
		if errors.Is(err, readline.ErrInterrupt) {
			continue // Ctrl-C drops the line being typed
		}
		if err != nil { // io.EOF: Ctrl-D
			return nil
		}
		quit, err := a.shellLine(s, file, line)
		if err != nil {
			fmt.Fprintf(a.stderr, "error: %s\n", describe(err))
		}
		if quit {
			return nil
		}
	}
}

// shellLine runs one command line; quit is set by exit and quit.
func (a *app) shellLine(s *simdr.Store, file, line string) (quit bool, err error) {
	words, err := splitWords(line)
	if err != nil {
		return false, err
	}
	if len(words) == 0 || strings.HasPrefix(words[0], "#") {
		return false, nil
	}
	// Opened read-only beside a writer (simdr serve), the store catches up
	// with what it committed since, before each command: otherwise the
	// shell would answer from the moment it was opened. (Refresh does
	// nothing on a store opened for writing.)
	if err := s.Refresh(); err != nil {
		return false, fmt.Errorf("catching up with the writer: %w", err)
	}
	cmd, args := words[0], words[1:]
	want := func(n int, usage string) error {
		if len(args) != n {
			return fmt.Errorf("usage: %s", usage)
		}
		return nil
	}
	w := a.stdout
	switch cmd {
	case "get", "read":
		if err := want(1, "get KEY"); err != nil {
			return false, err
		}
		e, err := get(s, args[0])
		if err != nil {
			return false, err
		}
		if _, err := e.WriteTo(w); err != nil {
			return false, err
		}
		_, err = io.WriteString(w, "\n")
		return false, err
	case "put", "write":
		const usage = "put KEY VALUE [--ttl DURATION]"
		if len(args) == 4 && args[2] == "--ttl" {
			ttl, err := parseTTL(args[3])
			if err != nil {
				return false, fmt.Errorf("--ttl %q: %v\nusage: %s", args[3], err, usage)
			}
			if err := s.PutTTL([]byte(args[0]), []byte(args[1]), ttl); err != nil {
				return false, fmt.Errorf("put %q: %w", args[0], err)
			}
			return false, nil
		}
		if err := want(2, usage); err != nil {
			return false, err
		}
		if err := s.Put([]byte(args[0]), []byte(args[1])); err != nil {
			return false, fmt.Errorf("put %q: %w", args[0], err)
		}
		return false, nil
	case "delete", "del":
		if err := want(1, "delete KEY"); err != nil {
			return false, err
		}
		if !s.Has([]byte(args[0])) {
			return false, &notFound{args[0]}
		}
		if err := s.Delete([]byte(args[0])); err != nil {
			return false, fmt.Errorf("delete %q: %w", args[0], err)
		}
		return false, nil
	case "has":
		if err := want(1, "has KEY"); err != nil {
			return false, err
		}
		_, err := fmt.Fprintln(w, s.Has([]byte(args[0])))
		return false, err
	case "ttl":
		if err := want(1, "ttl KEY"); err != nil {
			return false, err
		}
		d, err := ttlOf(s, args[0])
		if err != nil {
			return false, err
		}
		_, err = fmt.Fprintln(w, formatTTL(d))
		return false, err
	case "list", "ls":
		if err := want(0, "list"); err != nil {
			return false, err
		}
		return false, a.showList(s)
	case "info":
		if err := want(0, "info"); err != nil {
			return false, err
		}
		return false, a.showInfo(s, file)
	case "help", "?":
		_, err := io.WriteString(w, shellHelp)
		return false, err
	case "exit", "quit":
		return true, nil
	}
	return false, fmt.Errorf("unknown command %q (type help for the commands)", cmd)
}

// splitWords splits a shell line into words: separated by spaces, "double
// quoted" with Go escapes, or 'single quoted' as written.
func splitWords(line string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(line); {
		c := line[i]
		switch {
		case c == '"':
			j := i + 1
			for ; j < len(line) && line[j] != '"'; j++ {
				if line[j] == '\\' {
					j++
				}
			}
			if j >= len(line) {
				return nil, errors.New("unterminated \" quote")
			}
			u, err := strconv.Unquote(line[i : j+1])
			if err != nil {
				return nil, fmt.Errorf("bad quoted word %s: %w", line[i:j+1], err)
			}
			cur.WriteString(u)
			inWord = true
			i = j + 1
		case c == '\'':
			j := strings.IndexByte(line[i+1:], '\'')
			if j < 0 {
				return nil, errors.New("unterminated ' quote")
			}
			cur.WriteString(line[i+1 : i+1+j])
			inWord = true
			i += j + 2
		case c < 0x80 && unicode.IsSpace(rune(c)):
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
			i++
		default:
			cur.WriteByte(c)
			inWord = true
			i++
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}
