package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"unicode/utf8"

	"github.com/simdr-go/simdr"
	"github.com/simdr-go/simdr/internal/format"
)

// command is one subcommand.
type command struct {
	name     string
	aliases  []string
	args     string // the positional arguments, for usage lines
	summary  string
	help     string
	examples []string
	minArgs  int
	maxArgs  int  // -1: no limit
	json     bool // accepts --json
	flags    func(fs *flag.FlagSet, o *opts)
	run      func(a *app, file string, args []string) error
}

// commands, in the order help lists them.
var commands []*command

func init() {
	commands = []*command{
		cmdWrite, cmdRead, cmdDelete, cmdRename, cmdCopy, cmdMove, cmdCompact,
		cmdHas, cmdTTL, cmdBatch, cmdRepair, cmdShell, cmdBackup,
		cmdInfo, cmdMetadata, cmdVerify, cmdList, cmdImport, cmdExport, cmdServe, cmdClusterStatus,
		cmdWatch,
	}
}

func lookup(name string) *command {
	for _, c := range commands {
		if c.name == name || slices.Contains(c.aliases, name) {
			return c
		}
	}
	return nil
}

// notFound reports a missing key.
type notFound struct{ key string }

func (e *notFound) Error() string { return fmt.Sprintf("key %q not found", e.key) }

// hashNotFound reports a missing key given by its hash.
type hashNotFound struct{ hash uint64 }

func (e *hashNotFound) Error() string { return fmt.Sprintf("no key with hash %016x", e.hash) }

// info prints a confirmation or progress message on stderr, unless --quiet.
func (a *app) info(format string, args ...any) {
	if !a.o.quiet {
		fmt.Fprintf(a.stderr, format+"\n", args...)
	}
}

// warn prints a warning on stderr, even with --quiet.
func (a *app) warn(format string, args ...any) {
	fmt.Fprintf(a.stderr, "simdr: "+format+"\n", args...)
}

// openRead opens an existing store without writing to it, ever.
func (a *app) openRead(file string) (*simdr.Store, error) {
	if err := checkFile(file, false); err != nil {
		return nil, err
	}
	s, err := simdr.Open(file, &simdr.Options{ReadOnly: true})
	if err != nil {
		return nil, openError(file, err)
	}
	return s, nil
}

// openWrite opens a store for writing; when mustExist, a missing file is an
// error rather than created.
func (a *app) openWrite(file string, mustExist bool) (*simdr.Store, error) {
	return a.openWith(file, mustExist, simdr.Options{})
}

// openWith is openWrite with more options (Repair).
func (a *app) openWith(file string, mustExist bool, o simdr.Options) (*simdr.Store, error) {
	if err := checkFile(file, !mustExist); err != nil {
		return nil, err
	}
	o.SyncWrites, o.LockTimeout = a.o.sync, a.o.lockTimeout
	s, err := simdr.Open(file, &o)
	if err != nil {
		return nil, openError(file, err)
	}
	return s, nil
}

// checkFile refuses, before any open, a FILE that is not a regular file (a
// directory, a FIFO, which would block the open, a device such as /dev/zero,
// which maps as endless zeros), and names what is missing: the file, or the
// directory it would be created in (create).
func checkFile(file string, create bool) error {
	fi, err := os.Stat(file)
	switch {
	case err == nil:
		if !fi.Mode().IsRegular() {
			return fmt.Errorf("%s is not a regular file (%s): a store is a regular file", file, fileKind(fi.Mode()))
		}
		return nil
	case !errors.Is(err, fs.ErrNotExist):
		return err
	case !create:
		return &wordedError{fmt.Sprintf("store file %q does not exist", file), fs.ErrNotExist}
	}
	dir := filepath.Dir(file)
	di, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return &wordedError{fmt.Sprintf("cannot create %s: directory %q does not exist", file, dir), fs.ErrNotExist}
	case err != nil:
		return fmt.Errorf("cannot create %s: %w", file, err)
	case !di.IsDir():
		return fmt.Errorf("cannot create %s: %s is not a directory", file, dir)
	}
	return nil
}

// storeFiles returns what is on disk of the store FILE: FILE itself and the
// caches the engine keeps beside it (the state file, the index
// checkpoint), those of them that exist. A command that writes files
// (read --output, export) refuses to write over one of them, which would
// destroy the store it is reading; import does not read them.
func storeFiles(file string) []fs.FileInfo {
	var out []fs.FileInfo
	for _, p := range []string{file, file + simdr.StateSuffix, file + checkpointSuffix} {
		if fi, err := os.Stat(p); err == nil {
			out = append(out, fi)
		}
	}
	return out
}

// checkTarget refuses, as the file a command (copy, move, backup) writes
// while it reads the store file, a target that is not a regular file (a
// device such as /dev/null would be replaced by a rename) or that is the
// store file or one of its caches (under any name or link). what names the
// target in the message.
func checkTarget(file, target, what string) error {
	ti, err := os.Stat(target)
	switch {
	case err != nil:
		return nil // missing: created; any other problem is the open's to say
	case !ti.Mode().IsRegular():
		return fmt.Errorf("%s %s is not a regular file (%s)", what, target, fileKind(ti.Mode()))
	case isStoreFile(storeFiles(file), ti):
		return fmt.Errorf("%s %s is the store file %s (or a file the engine keeps beside it)", what, target, file)
	}
	return nil
}

// checkpointSuffix ends the name of the index checkpoint beside a store
// file (docs/checkpoint.md).
const checkpointSuffix = "-simdr-index"

// isStoreFile reports whether fi is one of files (from storeFiles): the
// same file, whatever name or link leads to it.
func isStoreFile(files []fs.FileInfo, fi fs.FileInfo) bool {
	return slices.ContainsFunc(files, func(s fs.FileInfo) bool { return os.SameFile(s, fi) })
}

// fileKind names the type of a file that is not regular.
func fileKind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	case m&fs.ModeSocket != 0:
		return "a socket"
	}
	return "type " + m.Type().String()
}

// openError words an error of simdr.Open on file: the engine's message
// repeats the path (its own "open FILE: " before the system's), said once
// here; errors.Is still sees the cause.
func openError(file string, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		if _, serr := os.Stat(file); errors.Is(serr, fs.ErrNotExist) {
			return &wordedError{fmt.Sprintf("store file %q does not exist", file), fs.ErrNotExist}
		}
	}
	msg := err.Error()
	pre := "open " + file + ": "
	for strings.Contains(msg, pre+pre) {
		msg = strings.ReplaceAll(msg, pre+pre, pre)
	}
	return &wordedError{msg, err}
}

// wordedError is err with another message.
type wordedError struct {
	msg string
	err error
}

func (e *wordedError) Error() string { return e.msg }
func (e *wordedError) Unwrap() error { return e.err }

// closeStore closes s, keeping the first error.
func closeStore(s *simdr.Store, err *error) {
	if cerr := s.Close(); cerr != nil && *err == nil {
		*err = cerr
	}
}

// get reads key, turning ErrNotFound into a notFound error naming the key.
func get(s *simdr.Store, key string) (simdr.Entry, error) {
	e, err := s.Get([]byte(key))
	if errors.Is(err, simdr.ErrNotFound) {
		return e, &notFound{key}
	}
	return e, err
}

func (a *app) printJSON(v any) error {
	enc := json.NewEncoder(a.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// ---- write / read -------------------------------------------------------

var cmdWrite = &command{
	name: "write", aliases: []string{"put"}, args: "KEY [VALUE]",
	summary: "store VALUE (or stdin) under KEY",
	help: `
Stores VALUE under KEY, replacing any value KEY had (and its expiry). Without
VALUE, the value is read from stdin until end of file and streamed into the
store with a fixed 1 MiB buffer, so a value of any size needs no more memory
than that. Without VALUE and with a terminal on stdin, write fails (exit 1)
rather than wait.

--ttl DURATION makes the value expire DURATION after it is written (a Go
duration: 90s, 10m, 24h; rounded up to whole milliseconds): from then on
read, has and ttl find no value. With --ttl, a value from stdin is first
spooled to a temporary file beside FILE (unlinked at once), then stored
from it: it needs its size free on that disk for a moment, and no memory.

A value cannot be empty nor the single byte 0x00 (the format's delete marker).
A missing FILE is created.`,
	examples: []string{
		`simdr data.simdr write greeting "Hello, world!"`,
		`echo "Hello, world!" | simdr data.simdr write greeting`,
		`simdr data.simdr write photo < photo.jpg`,
		`tar c ./dir | simdr data.simdr put backup.tar`,
		`simdr data.simdr write session "token" --ttl 30m`,
	},
	minArgs: 1, maxArgs: 2,
	flags: ttlFlags,
	run:   runWrite,
}

func runWrite(a *app, file string, args []string) (err error) {
	key := args[0]
	// FORCE_NO_TTY (set to anything) keeps stdin out, as in the Rust
	// original, whose tests use it to stand for "no value piped".
	_, noTTY := os.LookupEnv("FORCE_NO_TTY")
	if len(args) == 1 && (isTerminal(a.stdin) || noTTY) {
		return fmt.Errorf("write %q: No value provided: give VALUE, or pipe the value on stdin", key)
	}
	// What cannot be stored fails before FILE is opened, so that a missing
	// FILE is not created by a write that stores nothing.
	if len(args) == 2 && !format.ValueOK([]byte(args[1])) {
		return fmt.Errorf("write %q: %d bytes: %w", key, len(args[1]), simdr.ErrInvalidValue)
	}
	ctx := context.Background()
	var value io.Reader
	if len(args) == 1 {
		// Ctrl-C (SIGINT) or SIGTERM cancels the read, even one blocked on
		// an idle pipe: PutReader then rolls the partial value back (with
		// --ttl, nothing is stored before the whole value is spooled).
		var stop context.CancelFunc
		ctx, stop = signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
		defer stop()
		in := &countReader{r: newCancelReader(ctx, a.stdin)}
		// The first byte is read before FILE is opened: an empty stdin
		// (or Ctrl-C before anything came) stores nothing and creates
		// nothing.
		var first [1]byte
		m, rerr := io.ReadFull(in, first[:])
		switch {
		case ctx.Err() != nil:
			return fmt.Errorf("write %q: interrupted after 0 bytes: nothing stored", key)
		case m == 0 && rerr == io.EOF:
			return fmt.Errorf("write %q: No value provided and stdin is empty", key)
		case m == 0:
			return fmt.Errorf("write %q: reading stdin: %w", key, rerr)
		}
		value = io.MultiReader(bytes.NewReader(first[:]), in)
		defer func() { // after the store is closed, before stop
			if err != nil && ctx.Err() != nil {
				err = fmt.Errorf("write %q: interrupted after %s: nothing stored", key, countUnit(in.n, "byte"))
			}
		}()
	}
	s, err := a.openWrite(file, false)
	if err != nil {
		return err
	}
	defer closeStore(s, &err)
	var n int64
	ttl := a.o.ttl
	switch {
	case len(args) == 2 && ttl.set:
		n = int64(len(args[1]))
		err = s.PutTTL([]byte(key), []byte(args[1]), ttl.d)
	case len(args) == 2:
		n = int64(len(args[1]))
		err = s.Put([]byte(key), []byte(args[1]))
	case ttl.set:
		n, err = putStdinTTL(ctx, s, file, key, value, ttl.d)
	default:
		n, err = s.PutReader([]byte(key), value)
	}
	if err != nil {
		return fmt.Errorf("write %q: %w", key, err)
	}
	if ttl.set {
		a.info("Stored %q (%s, expires in %v)", key, countUnit(n, "byte"), ttl.d)
	} else {
		a.info("Stored %q (%s)", key, countUnit(n, "byte"))
	}
	return nil
}

// cancelReader reads r from another goroutine, so that a Read blocked in
// the system (a pipe with no writer activity) can be abandoned: Read returns
// ctx's error as soon as ctx is done. The goroutine then stays blocked until
// r yields, which is harmless for a command about to exit.
type cancelReader struct {
	ctx  context.Context
	req  chan int
	resp chan readResult
	buf  []byte
	left []byte // read by the goroutine, not yet returned
	err  error  // sticky
}

type readResult struct {
	n   int
	err error
}

func newCancelReader(ctx context.Context, r io.Reader) *cancelReader {
	c := &cancelReader{ctx: ctx, req: make(chan int), resp: make(chan readResult, 1), buf: make([]byte, 256<<10)}
	go func() {
		for n := range c.req {
			m, err := r.Read(c.buf[:n])
			c.resp <- readResult{m, err}
		}
	}()
	return c
}

func (c *cancelReader) Read(b []byte) (int, error) {
	if len(c.left) > 0 {
		n := copy(b, c.left)
		c.left = c.left[n:]
		return n, nil
	}
	if c.err != nil {
		return 0, c.err
	}
	if err := c.ctx.Err(); err != nil {
		c.err = err
		return 0, err
	}
	select {
	case c.req <- min(len(b), len(c.buf)):
	case <-c.ctx.Done():
		c.err = c.ctx.Err()
		return 0, c.err
	}
	select {
	case r := <-c.resp:
		n := copy(b, c.buf[:r.n])
		c.left = c.buf[n:r.n]
		if r.err != nil {
			c.err = r.err
			if len(c.left) > 0 {
				return n, nil
			}
		}
		return n, r.err
	case <-c.ctx.Done():
		c.err = c.ctx.Err()
		return 0, c.err
	}
}

// countReader counts the bytes read through it.
type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n += int64(n)
	return n, err
}

// ---- delete / rename / copy / move ------------------------------------------

var cmdRename = &command{
	name: "rename", args: "OLD_KEY NEW_KEY",
	summary: "move the value of OLD_KEY to NEW_KEY",
	help: `
Moves the value of OLD_KEY to NEW_KEY in one atomic write, replacing any value
NEW_KEY had. A missing OLD_KEY is an error (exit 1). FILE must exist.`,
	examples: []string{`simdr data.simdr rename draft final`},
	minArgs:  2, maxArgs: 2,
	run: func(a *app, file string, args []string) (err error) {
		s, err := a.openWrite(file, true)
		if err != nil {
			return err
		}
		defer closeStore(s, &err)
		err = s.Rename([]byte(args[0]), []byte(args[1]))
		switch {
		case errors.Is(err, simdr.ErrNotFound):
			return &notFound{args[0]}
		case errors.Is(err, simdr.ErrSameKey):
			return fmt.Errorf("rename: %q and %q are the same key", args[0], args[1])
		case err != nil:
			return err
		}
		a.info("Renamed %q to %q", args[0], args[1])
		return nil
	},
}

var cmdCopy = &command{
	name: "copy", args: "KEY TARGET_FILE",
	summary: "copy KEY into another store file",
	help: `
Copies the value of KEY into the store TARGET_FILE (created if missing) under
the same key, bytes and checksum. FILE must exist and is only read. A missing
KEY is an error (exit 1), and TARGET_FILE is then left untouched: not even
created (the Rust original leaves an empty TARGET_FILE behind).`,
	examples: []string{`simdr data.simdr copy greeting backup.simdr`},
	minArgs:  2, maxArgs: 2,
	run: func(a *app, file string, args []string) error { return transfer(a, file, args, false) },
}

var cmdMove = &command{
	name: "move", args: "KEY TARGET_FILE",
	summary: "move KEY into another store file",
	help: `
Copies the value of KEY into the store TARGET_FILE (created if missing), makes
the copy durable, then deletes KEY from FILE. If the copy fails, FILE keeps the
value. A missing KEY is an error (exit 1). FILE must exist.`,
	examples: []string{`simdr data.simdr move greeting archive.simdr`},
	minArgs:  2, maxArgs: 2,
	run: func(a *app, file string, args []string) error { return transfer(a, file, args, true) },
}

func transfer(a *app, file string, args []string, move bool) (err error) {
	key, target := args[0], args[1]
	if err := checkTarget(file, target, "TARGET_FILE"); err != nil {
		return err
	}
	var src *simdr.Store
	if move {
		src, err = a.openWrite(file, true)
	} else {
		src, err = a.openRead(file)
	}
	if err != nil {
		return err
	}
	defer closeStore(src, &err)
	if !src.Has([]byte(key)) {
		return &notFound{key} // before the target is created
	}
	dst, err := a.openWrite(target, false)
	if err != nil {
		return fmt.Errorf("target: %w", err)
	}
	defer closeStore(dst, &err)
	if move {
		err = src.Move([]byte(key), dst)
	} else {
		err = src.Copy([]byte(key), dst)
	}
	if errors.Is(err, simdr.ErrNotFound) {
		return &notFound{key}
	}
	if err != nil {
		return err
	}
	if move {
		a.info("Moved %q to %s", key, target)
	} else {
		a.info("Copied %q to %s", key, target)
	}
	return nil
}

// ---- compact ------------------------------------------------------------

var cmdCompact = &command{
	name: "compact", args: "",
	summary: "rewrite the file with only the live entries",
	help: `
Rewrites FILE with only the latest value of each live key (no overwritten
values, no delete markers), into a temporary file beside the file FILE names
(.NAME.INODE.simdr.compact; symlinks are followed, and the link stays), with
FILE's mode, owner and group, then renames it over that file. A crash at any
point leaves either the old or the new file whole. A file with other hard
links is refused, and so is one whose live values fail their checksums
(verify lists them). Shows a
progress bar on stderr when stderr is a terminal. FILE must exist.`,
	examples: []string{`simdr data.simdr compact`, `simdr -q data.simdr compact`},
	minArgs:  0, maxArgs: 0,
	run: runCompact,
}

func runCompact(a *app, file string, _ []string) (err error) {
	s, err := a.openWrite(file, true)
	if err != nil {
		return err
	}
	defer closeStore(s, &err)
	before := s.Stats()
	p := a.newProgress("compacting", before.FileBytes-before.ReclaimableBytes)
	p.poll = func() int64 {
		fi, err := os.Stat(s.CompactTempPath())
		if err != nil {
			return -1
		}
		return fi.Size()
	}
	p.start()
	err = s.Compact()
	p.finish()
	if err != nil {
		return err
	}
	after := s.Size()
	a.info("Compacted %s: %s -> %s (%s reclaimed)", file, formatBytes(before.FileBytes), formatBytes(after), formatBytes(max(0, before.FileBytes-after)))
	return nil
}

// ---- info / metadata ----------------------------------------------------

var cmdInfo = &command{
	name: "info", args: "",
	summary: "show the file's size, live keys, tombstones, reclaimable bytes",
	help: `
Shows the file, its size, the number of live keys, of stored values (current
and overwritten) and of delete markers, the bytes of live values, and about
how many bytes compact would reclaim. FILE must exist and is only read.`,
	examples: []string{`simdr data.simdr info`, `simdr data.simdr info --json | jq .live_keys`},
	minArgs:  0, maxArgs: 0, json: true,
	flags: func(fs *flag.FlagSet, o *opts) {
		fs.BoolVar(&o.detailed, "detailed", o.detailed, "accepted and ignored, for scripts written for later versions of the Rust original (its 0.16.3-alpha refuses it); the compaction estimate is always shown")
	},
	run: runInfo,
}

// infoJSON is the --json form of info.
type infoJSON struct {
	File             string `json:"file"`
	FileBytes        int64  `json:"file_bytes"`
	LiveKeys         int    `json:"live_keys"`
	Entries          int64  `json:"entries"`
	Tombstones       int64  `json:"tombstones"`
	LiveBytes        int64  `json:"live_bytes"`
	ReclaimableBytes int64  `json:"reclaimable_bytes"`
	TrailingBytes    int64  `json:"trailing_bytes"`
	IndexBytes       int    `json:"index_bytes"`
}

func runInfo(a *app, file string, _ []string) (err error) {
	s, err := a.openRead(file)
	if err != nil {
		return err
	}
	defer closeStore(s, &err)
	return a.showInfo(s, file)
}

// showInfo prints info's report on s, open on file.
func (a *app) showInfo(s *simdr.Store, file string) error {
	st := s.Stats()
	var trailing int64
	if fi, err := os.Stat(file); err == nil {
		trailing = max(0, fi.Size()-st.FileBytes)
	}
	if a.o.json {
		return a.printJSON(infoJSON{
			File: file, FileBytes: st.FileBytes, LiveKeys: st.LiveKeys, Entries: st.Entries,
			Tombstones: st.Tombstones, LiveBytes: st.LiveBytes, ReclaimableBytes: st.ReclaimableBytes,
			TrailingBytes: trailing, IndexBytes: st.IndexBytes,
		})
	}
	w := a.stdout
	fmt.Fprintf(w, "\n%s\n", center(" STORAGE INFO ", 50, '='))
	row(w, "STORAGE FILE:", fmt.Sprintf("%q", file))
	fmt.Fprintln(w, strings.Repeat("-", 50))
	row(w, "TOTAL SIZE:", formatBytesExact(st.FileBytes))
	row(w, "ACTIVE ENTRIES:", st.LiveKeys)
	row(w, "STORED VALUES:", st.Entries)
	row(w, "TOMBSTONES:", st.Tombstones)
	row(w, "LIVE PAYLOAD:", formatBytesExact(st.LiveBytes))
	row(w, "COMPACTION SAVINGS:", formatBytesExact(st.ReclaimableBytes))
	if trailing > 0 {
		row(w, "TRAILING BYTES:", fmt.Sprintf("%d (past the last complete entry: a torn write, cut at the next writable open)", trailing))
	}
	fmt.Fprintln(w, strings.Repeat("=", 50))
	return nil
}

// row prints a label padded to 25 columns and a value, as the original does.
func row(w io.Writer, label string, v any) {
	fmt.Fprintf(w, "%-25s %v\n", label, v)
}

// center centers s in width columns, padding with c (extra on the right).
func center(s string, width int, c byte) string {
	pad := width - len(s)
	if pad <= 0 {
		return s
	}
	l := pad / 2
	return strings.Repeat(string(c), l) + s + strings.Repeat(string(c), pad-l)
}

var cmdMetadata = &command{
	name: "metadata", args: "KEY | --hash HASH",
	summary: "show the size, offsets, key hash and checksum of KEY's value",
	help: `
Shows where the value of KEY lies in the file and what its metadata holds:
payload size, size with the 20-byte metadata, offset range, key hash (XXH3-64),
the stored CRC-32 checksum and whether the bytes still match it. A missing key
is an error (exit 1). --hash HASH shows the key whose hash is HASH (16 hex
digits, as list prints them). FILE must exist and is only read.`,
	examples: []string{
		`simdr data.simdr metadata greeting`,
		`simdr data.simdr metadata greeting --json`,
		`simdr data.simdr metadata --hash f01e5cbbc09d4fc4`,
	},
	minArgs: 0, maxArgs: 1, json: true,
	flags: hashFlag,
	run:   runMetadata,
}

// metadataJSON is the --json form of metadata. Hashes and checksums are hex
// strings (a 64-bit hash does not fit a JSON number exactly).
type metadataJSON struct {
	Key           *string `json:"key,omitempty"`     // absent with --hash; "" is the empty key
	KeyB64        string  `json:"key_b64,omitempty"` // a key that is not UTF-8 (base64), instead of key
	PayloadBytes  int     `json:"payload_bytes"`
	TotalBytes    int     `json:"total_bytes"`
	Offset        int64   `json:"offset"`
	End           int64   `json:"end"`
	KeyHash       string  `json:"key_hash"`
	Checksum      string  `json:"checksum"`
	ChecksumValid bool    `json:"checksum_valid"`
	PrevOffset    int64   `json:"prev_offset"`
}

func runMetadata(a *app, file string, args []string) (err error) {
	r, err := a.oneRef("metadata", args)
	if err != nil {
		return err
	}
	s, err := a.openRead(file)
	if err != nil {
		return err
	}
	defer closeStore(s, &err)
	key := r.key
	e, err := r.get(s)
	if err != nil {
		return err
	}
	// The metadata record follows the payload; read it for the previous offset.
	prev := int64(-1)
	if f, err := os.Open(file); err == nil {
		var b [format.MetaSize]byte
		if _, err := f.ReadAt(b[:], e.Offset()+int64(e.Len())); err == nil {
			prev = format.ReadMeta(b[:]).Prev
		}
		f.Close()
	}
	valid := e.Verify() == nil
	end := e.Offset() + int64(e.Len())
	if a.o.json {
		mj := metadataJSON{
			PayloadBytes: e.Len(), TotalBytes: e.Len() + format.MetaSize,
			Offset: e.Offset(), End: end,
			KeyHash: fmt.Sprintf("%016x", e.KeyHash()), Checksum: fmt.Sprintf("%08x", e.Checksum()),
			ChecksumValid: valid, PrevOffset: prev,
		}
		switch {
		case r.byHash:
		case utf8.ValidString(key):
			mj.Key = &key
		default:
			mj.KeyB64 = base64.StdEncoding.EncodeToString([]byte(key))
		}
		err := a.printJSON(mj)
		if err == nil && !valid {
			err = errReported
		}
		return err
	}
	w := a.stdout
	fmt.Fprintf(w, "\n%s\n", center(" METADATA SUMMARY ", 50, '='))
	row(w, "ENTRY FOR:", r.label())
	fmt.Fprintln(w, strings.Repeat("-", 50))
	row(w, "PAYLOAD SIZE:", countUnit(int64(e.Len()), "byte"))
	row(w, "TOTAL SIZE (W/ METADATA):", countUnit(int64(e.Len()+format.MetaSize), "byte"))
	row(w, "OFFSET RANGE:", fmt.Sprintf("%d..%d", e.Offset(), end))
	row(w, "KEY HASH:", fmt.Sprintf("%d (0x%016x)", e.KeyHash(), e.KeyHash()))
	row(w, "CHECKSUM:", fmt.Sprintf("%d (0x%08x)", e.Checksum(), e.Checksum()))
	validity := "VALID"
	if !valid {
		validity = "INVALID"
	}
	row(w, "CHECKSUM VALIDITY:", validity)
	fmt.Fprintln(w, strings.Repeat("-", 50))
	row(w, "STORED METADATA:", fmt.Sprintf("key_hash=0x%016x prev_offset=%d checksum=0x%08x", e.KeyHash(), prev, e.Checksum()))
	fmt.Fprintln(w, strings.Repeat("=", 50))
	if !valid {
		a.warn("the value of %s does not match its checksum", r.label())
		return errReported
	}
	return nil
}

// ---- list -----------------------------------------------------------------

var cmdList = &command{
	name: "list", aliases: []string{"ls"}, args: "",
	summary: "list the key hash, size and offset of every live entry",
	help: `
Lists every live entry, in file order: its key hash (XXH3-64, hex), its size
and its offset. The store keeps only hashes, not keys, so the key itself is
shown only when an import manifest names it (see import); with --namespace,
the manifest of that namespace is used.`,
	examples: []string{
		`simdr data.simdr list`,
		`simdr data.simdr list --json | jq -r '.[].key_hash'`,
		`simdr site.simdr list --namespace assets`,
	},
	minArgs: 0, maxArgs: 0, json: true,
	flags: func(fs *flag.FlagSet, o *opts) {
		fs.StringVar(&o.namespace, "namespace", o.namespace, "name keys from the import manifest of namespace `NS`")
		fs.StringVar(&o.namespace, "n", o.namespace, "")
	},
	run: runList,
}

// manifestLabel names the import manifest in list.
const manifestLabel = "(import manifest)"

// listJSON is one element of list --json.
type listJSON struct {
	KeyHash  string `json:"key_hash"`
	Size     int    `json:"size"`
	Offset   int64  `json:"offset"`
	Key      string `json:"key,omitempty"`
	KeyB64   []byte `json:"key_b64,omitempty"` // a key that is not UTF-8
	Manifest bool   `json:"import_manifest,omitempty"`
}

func runList(a *app, file string, _ []string) (err error) {
	s, err := a.openRead(file)
	if err != nil {
		return err
	}
	defer closeStore(s, &err)
	return a.showList(s)
}

// showList prints list's report on s.
func (a *app) showList(s *simdr.Store) (err error) {
	// The manifest is told by its hash, not by a name: an imported file may
	// be called "(import manifest)".
	names := map[uint64]string{}
	mhash := simdr.Hash(manifestKey(a.o.namespace))
	if keys, err := readManifest(s, a.o.namespace); err == nil {
		for _, k := range keys {
			names[simdr.Hash(storeKey(a.o.namespace, k))] = k
		}
	} else if !errors.Is(err, simdr.ErrNotFound) {
		a.warn("list: %s", describe(err))
	}
	var ents []simdr.Entry
	for e := range s.Entries() {
		ents = append(ents, e)
	}
	slices.SortFunc(ents, func(x, y simdr.Entry) int { return cmp.Compare(x.Offset(), y.Offset()) })
	w := a.stdout
	if a.o.json {
		// Written element by element: a large store is not held twice.
		io.WriteString(w, "[")
		for i, e := range ents {
			le := listJSON{
				KeyHash: fmt.Sprintf("%016x", e.KeyHash()), Size: e.Len(), Offset: e.Offset(),
				Manifest: e.KeyHash() == mhash,
			}
			if k, ok := names[e.KeyHash()]; ok && !le.Manifest {
				if utf8.ValidString(k) {
					le.Key = k
				} else {
					le.KeyB64 = []byte(k)
				}
			}
			b, _ := json.Marshal(le)
			if i > 0 {
				io.WriteString(w, ",")
			}
			io.WriteString(w, "\n  ")
			w.Write(b)
		}
		if len(ents) > 0 {
			io.WriteString(w, "\n")
		}
		_, err = io.WriteString(w, "]\n")
		return err
	}
	fmt.Fprintf(w, "%-16s  %12s  %14s  %s\n", "KEY HASH", "SIZE", "OFFSET", "KEY")
	for _, e := range ents {
		name := manifestLabel
		if e.KeyHash() != mhash {
			name = ""
			if k, ok := names[e.KeyHash()]; ok {
				name = strconv.Quote(k)
			}
		}
		line := strings.TrimRight(fmt.Sprintf("%016x  %12d  %14d  %s", e.KeyHash(), e.Len(), e.Offset(), name), " ")
		if _, err := fmt.Fprintln(w, line); err != nil {
			return err
		}
	}
	return nil
}
