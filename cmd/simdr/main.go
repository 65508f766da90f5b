// Command simdr works with a simdr store file from a shell.
//
// Usage:
//
//	simdr [global flags] FILE COMMAND [ARGS]
//
// The order (the file before the command) is that of the Rust original's CLI,
// so scripts written for it keep working. Run "simdr --help" for the commands,
// "simdr help COMMAND" for one of them; docs/cli.md has the full reference.
//
// Exit codes: 0 success, 1 failure (including a key that is not found),
// 2 usage error.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"sort"
	"strings"
	"time"

	"github.com/simdr-go/simdr"
)

// version is the release version; set with -ldflags "-X main.version=v1.2.3".
// When empty, the module version recorded in the binary is used.
var version = ""

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

func main() {
	a := &app{stdin: os.Stdin, stdout: &outFile{f: os.Stdout}, stderr: os.Stderr}
	os.Exit(a.run(os.Args[1:]))
}

// app is one run of the command: its streams and options.
type app struct {
	stdin  *os.File
	stdout *outFile
	stderr *os.File
	o      opts
}

// outFile is stdout, remembering the first error a write to it met, so that
// a command whose report could not be written (a full disk, a closed pipe's
// EIO) exits 1 rather than 0 even where it does not check each write.
type outFile struct {
	f   *os.File
	err error
}

// Write writes b to the file, recording the first error.
func (o *outFile) Write(b []byte) (int, error) {
	n, err := o.f.Write(b)
	if err != nil && o.err == nil {
		o.err = err
	}
	return n, err
}

// opts holds every flag; the global ones are accepted before FILE, between
// FILE and COMMAND, and among the command's arguments.
type opts struct {
	// global
	help        bool
	version     bool
	quiet       bool
	json        bool
	sync        bool
	lockTimeout time.Duration

	// per command
	force      bool
	namespace  string
	bufferSize string
	detailed   bool
	keysFrom   string
	addr       string
	tokenFile  string
	insecure   bool
	maxValue   string
	output     string
	hashes     stringList
	chunk      int
	ttl        ttlFlag
}

// usageError is a mistake in the command line: exit code 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{fmt.Sprintf(format, args...)}
}

// failure is an error already reported (or needing no more words): exit 1.
var errReported = errors.New("reported")

// registerGlobal adds the global flags to fs, keeping the values already parsed.
func registerGlobal(fs *flag.FlagSet, o *opts) {
	fs.BoolVar(&o.help, "help", o.help, "show help")
	fs.BoolVar(&o.help, "h", o.help, "")
	fs.BoolVar(&o.version, "version", o.version, "print the version and exit")
	fs.BoolVar(&o.quiet, "quiet", o.quiet, "no progress bar, no confirmation messages")
	fs.BoolVar(&o.quiet, "q", o.quiet, "")
	fs.BoolVar(&o.json, "json", o.json, "JSON output (read, ttl, info, metadata, repair, verify, list)")
	fs.BoolVar(&o.sync, "sync", o.sync, "make writes durable (fdatasync) before exiting")
	fs.DurationVar(&o.lockTimeout, "lock-timeout", o.lockTimeout, "wait up to `DURATION` for another writer to release the file (default: fail at once)")
}

// aliases maps a short flag to the long one it stands for (help output).
var aliases = map[string]string{"h": "help", "q": "quiet", "b": "buffer-size", "n": "namespace", "f": "force", "o": "output"}

func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// isBoolFlag reports whether f takes no value.
func isBoolFlag(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// parseFlags parses the flags in args with fs, allowing them anywhere among
// the positional arguments (unlike flag.Parse) unless stop is set, in which
// case it stops at the first positional one and returns it and the rest
// unparsed. "--" ends the flags; a lone "-" is a positional argument.
func parseFlags(fs *flag.FlagSet, args []string, stop bool) ([]string, error) {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' {
			if stop {
				pos = append(pos, args[i:]...)
				break
			}
			pos = append(pos, a)
			continue
		}
		name := strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
		if strings.Contains(name, "=") {
			flags = append(flags, a)
			continue
		}
		f := fs.Lookup(name)
		if f == nil {
			return nil, usagef("unknown flag %s", a)
		}
		if isBoolFlag(f) {
			flags = append(flags, a)
			continue
		}
		if i+1 == len(args) {
			return nil, usagef("flag %s needs a value", a)
		}
		flags = append(flags, a, args[i+1])
		i++
	}
	if err := fs.Parse(flags); err != nil {
		return nil, usagef("%v", err)
	}
	return pos, nil
}

func (a *app) run(args []string) (code int) {
	err := a.dispatch(args)
	if err == nil && a.stdout.err != nil {
		err = fmt.Errorf("writing the output: %w", a.stdout.err)
	}
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, new(*usageError)):
		fmt.Fprintf(a.stderr, "simdr: %v\nRun 'simdr --help' for usage.\n", err)
		return exitUsage
	case errors.Is(err, errReported):
		return exitFailure
	default:
		fmt.Fprintf(a.stderr, "simdr: %s\n", describe(err))
		return exitFailure
	}
}

// splitArgs finds FILE and COMMAND among args, which may hold flags anywhere
// (before FILE too): a token is a flag's value when it follows a flag that
// takes one, in the union of the global flags and every command's flags. It
// returns the (at most two) positional arguments found and args without
// them, flags and the command's own arguments in their order. "--" ends the
// flags: what follows it is positional.
func splitArgs(args []string) (pos, rest []string, err error) {
	all := newFlagSet("all")
	registerGlobal(all, &opts{})
	addCommandFlags(all)
	for i := 0; i < len(args); i++ {
		a := args[i]
		if len(pos) == 2 {
			rest = append(rest, args[i:]...)
			break
		}
		if a == "--" {
			rest = append(rest, a)
			for _, b := range args[i+1:] {
				if len(pos) < 2 {
					pos = append(pos, b)
				} else {
					rest = append(rest, b)
				}
			}
			break
		}
		if len(a) < 2 || a[0] != '-' {
			pos = append(pos, a)
			continue
		}
		rest = append(rest, a)
		name := strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
		if strings.Contains(name, "=") {
			continue
		}
		f := all.Lookup(name)
		if f == nil {
			return nil, nil, usagef("unknown flag %s", a)
		}
		if !isBoolFlag(f) && i+1 < len(args) {
			rest = append(rest, args[i+1])
			i++
		}
	}
	return pos, rest, nil
}

// addCommandFlags adds to fs every command's flags (each name once, bound to
// values nobody reads).
func addCommandFlags(fs *flag.FlagSet) {
	for _, c := range commands {
		if c.flags == nil {
			continue
		}
		cfs := newFlagSet(c.name)
		c.flags(cfs, &opts{})
		cfs.VisitAll(func(f *flag.Flag) {
			if fs.Lookup(f.Name) == nil {
				fs.Var(f.Value, f.Name, f.Usage)
			}
		})
	}
}

func (a *app) dispatch(args []string) error {
	o := &a.o
	pos, rest, err := splitArgs(args)
	if err != nil {
		return err
	}
	var c *command
	switch {
	case len(pos) >= 1 && pos[0] == "help":
		// "simdr help COMMAND": parse the global flags only.
		gfs := newFlagSet("simdr")
		registerGlobal(gfs, o)
		more, err := parseFlags(gfs, append(rest, pos[1:]...), false)
		if err != nil {
			return err
		}
		return a.helpCommand(more)
	case len(pos) == 2:
		c = lookup(pos[1])
	}
	cfs := newFlagSet("simdr")
	registerGlobal(cfs, o)
	if c != nil {
		cfs = newFlagSet(c.name)
		registerGlobal(cfs, o)
		if c.flags != nil {
			c.flags(cfs, o)
		}
	} else {
		// No command (yet): accept any command's flag, for "simdr read --help".
		addCommandFlags(cfs)
	}
	cargs, err := parseFlags(cfs, rest, false)
	if err != nil {
		if c != nil {
			return &usageError{fmt.Sprintf("%s: %v", c.name, err)}
		}
		return err
	}
	if o.lockTimeout < 0 {
		return usagef("--lock-timeout %v: a duration cannot be negative", o.lockTimeout)
	}
	if o.version {
		fmt.Fprintln(a.stdout, versionString())
		return nil
	}
	switch {
	case len(pos) == 0:
		if o.help {
			a.topHelp(a.stdout)
			return nil
		}
		return &usageError{"missing FILE and COMMAND\nusage: simdr [global flags] FILE COMMAND [ARGS] [flags]"}
	case len(pos) == 1:
		if o.help {
			// "simdr read --help": FILE is really the command.
			if k := lookup(pos[0]); k != nil {
				a.commandHelp(a.stdout, k)
			} else {
				a.topHelp(a.stdout)
			}
			return nil
		}
		return usagef("missing COMMAND after %s", pos[0])
	case c == nil:
		if o.help {
			a.topHelp(a.stdout)
			return nil
		}
		if lookup(pos[0]) != nil {
			return usagef("unknown command %q (the store FILE comes first: simdr FILE %s ...)", pos[1], pos[0])
		}
		return usagef("unknown command %q", pos[1])
	}
	if o.help {
		a.commandHelp(a.stdout, c)
		return nil
	}
	file := pos[0]
	if len(cargs) < c.minArgs || (c.maxArgs >= 0 && len(cargs) > c.maxArgs) {
		return usagef("%s: wrong number of arguments\nusage: simdr FILE %s %s", c.name, c.name, c.args)
	}
	if o.json && !c.json {
		return usagef("%s: --json is not supported (%s have it)", c.name, jsonCommands())
	}
	// Every command refuses, before any open, a FILE that exists but is not
	// a regular file (a FIFO would block the open).
	if fi, err := os.Stat(file); err == nil && !fi.Mode().IsRegular() && c != cmdClusterStatus { // "cluster", not a FILE
		return checkFile(file, false)
	}
	return c.run(a, file, cargs)
}

// jsonCommands lists the commands that accept --json.
func jsonCommands() string {
	var names []string
	for _, c := range commands {
		if c.json {
			names = append(names, c.name)
		}
	}
	return strings.Join(names, ", ")
}

func (a *app) helpCommand(args []string) error {
	if len(args) == 0 {
		a.topHelp(a.stdout)
		return nil
	}
	c := lookup(args[0])
	if c == nil {
		return usagef("help: unknown command %q", args[0])
	}
	a.commandHelp(a.stdout, c)
	return nil
}

func versionString() string {
	v := version
	if v == "" {
		v = "(devel)"
		if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
			v = bi.Main.Version
		}
	}
	return fmt.Sprintf("simdr %s (%s %s/%s; file format of SIMD R Drive)", v, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// describe turns an error into the text printed after "simdr: ", without the
// "simdr: " prefixes the engine's nested errors repeat.
func describe(err error) string {
	msg := err.Error()
	msg = strings.ReplaceAll(msg, ": simdr: ", ": ")
	msg = strings.TrimPrefix(msg, "simdr: ")
	switch {
	case errors.Is(err, simdr.ErrLocked):
		msg += " (another simdr process, such as 'simdr serve', is writing to it; see --lock-timeout)"
	}
	return msg
}

// topHelp prints the overall usage.
func (a *app) topHelp(w io.Writer) {
	fmt.Fprint(w, `simdr works with a simdr store file: one append-only, memory-mapped file of
key/value entries, in the file format of SIMD R Drive (rust-simd-r-drive).

Usage:
  simdr [global flags] FILE COMMAND [ARGS] [flags]
  simdr help COMMAND       help for one command
  simdr --version

Commands:
`)
	for _, c := range commands {
		name := c.name
		if len(c.aliases) > 0 {
			name += " (" + strings.Join(c.aliases, ", ") + ")"
		}
		fmt.Fprintf(w, "  %-16s %s\n", name, c.summary)
	}
	fmt.Fprint(w, `
Global flags (accepted anywhere):
`)
	fs := newFlagSet("")
	registerGlobal(fs, &opts{})
	printFlags(w, fs)
	fmt.Fprint(w, `
Examples:
  simdr data.simdr write greeting "Hello, world!"
  echo "Hello, world!" | simdr data.simdr write greeting
  simdr data.simdr read greeting
  simdr data.simdr info

Exit codes: 0 success, 1 failure (a missing key too), 2 usage error.
A FILE is created by commands that write (write, batch, shell, import,
serve, and the target of copy and move); the other commands need it to
exist. FILE must be a regular file. Flags may go anywhere, before FILE too.
`)
}

// commandHelp prints the help of one command.
func (a *app) commandHelp(w io.Writer, c *command) {
	fmt.Fprintf(w, "simdr FILE %s %s\n\n%s\n", c.name, c.args, strings.TrimSpace(c.help))
	if len(c.aliases) > 0 {
		fmt.Fprintf(w, "\nAliases: %s\n", strings.Join(c.aliases, ", "))
	}
	if c.flags != nil {
		fs := newFlagSet(c.name)
		c.flags(fs, &opts{})
		fmt.Fprint(w, "\nFlags:\n")
		printFlags(w, fs)
	}
	fmt.Fprint(w, "\nGlobal flags: --quiet (-q), --json, --sync, --lock-timeout DURATION, --help (-h), --version\n")
	if len(c.examples) > 0 {
		fmt.Fprint(w, "\nExamples:\n")
		for _, e := range c.examples {
			fmt.Fprintf(w, "  %s\n", e)
		}
	}
}

// printFlags lists fs's flags, short aliases beside their long names.
func printFlags(w io.Writer, fs *flag.FlagSet) {
	short := map[string]string{}
	for s, l := range aliases {
		if fs.Lookup(s) != nil {
			short[l] = s
		}
	}
	var lines [][2]string
	fs.VisitAll(func(f *flag.Flag) {
		if _, isAlias := aliases[f.Name]; isAlias && fs.Lookup(aliases[f.Name]) != nil {
			return
		}
		name, usage := flag.UnquoteUsage(f)
		left := "--" + f.Name
		if s, ok := short[f.Name]; ok {
			left = "-" + s + ", " + left
		}
		if !isBoolFlag(f) {
			if name == "value" {
				name = "VALUE"
			}
			left += " " + name
		}
		lines = append(lines, [2]string{left, usage})
	})
	sort.Slice(lines, func(i, j int) bool {
		return strings.TrimLeft(lines[i][0][strings.Index(lines[i][0], "--"):], "-") <
			strings.TrimLeft(lines[j][0][strings.Index(lines[j][0], "--"):], "-")
	})
	for _, l := range lines {
		fmt.Fprintf(w, "  %-28s %s\n", l[0], l[1])
	}
}
