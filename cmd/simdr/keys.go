package main

import (
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/simdr-go/simdr"
)

// stringList is a flag that may be repeated; each use adds a value.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

// hashFlag registers --hash on fs.
func hashFlag(fs *flag.FlagSet, o *opts) {
	fs.Var(&o.hashes, "hash", "address the key by its XXH3-64 hash, `HASH`: 16 hex digits, as list prints them")
}

// parseHash parses a key hash as list prints it: 16 hex digits (a leading
// 0x, as metadata prints it, is allowed).
func parseHash(s string) (uint64, error) {
	t := strings.TrimPrefix(strings.TrimPrefix(s, "0x"), "0X")
	if len(t) != 16 {
		return 0, usagef("--hash %q: a key hash is 16 hex digits (as list prints it)", s)
	}
	h, err := strconv.ParseUint(t, 16, 64)
	if err != nil {
		return 0, usagef("--hash %q: a key hash is 16 hex digits (as list prints it)", s)
	}
	return h, nil
}

// keyRef is a key named on the command line, or given by its hash.
type keyRef struct {
	key    string
	hash   uint64
	byHash bool
}

func keyOf(key string) keyRef { return keyRef{key: key, hash: simdr.Hash([]byte(key))} }

// label names r in messages: the key quoted, or "hash H".
func (r keyRef) label() string {
	if r.byHash {
		return fmt.Sprintf("hash %016x", r.hash)
	}
	return strconv.Quote(r.key)
}

// missing is the error for r having no value.
func (r keyRef) missing() error {
	if r.byHash {
		return &hashNotFound{r.hash}
	}
	return &notFound{r.key}
}

// get reads r, turning ErrNotFound into an error naming it.
func (r keyRef) get(s *simdr.Store) (simdr.Entry, error) {
	e, err := s.GetHash(r.hash)
	if errors.Is(err, simdr.ErrNotFound) {
		return e, r.missing()
	}
	return e, err
}

// refs returns the keys args and --hash name, keys first.
func (a *app) refs(args []string) ([]keyRef, error) {
	var out []keyRef
	for _, k := range args {
		out = append(out, keyOf(k))
	}
	for _, s := range a.o.hashes {
		h, err := parseHash(s)
		if err != nil {
			return nil, err
		}
		out = append(out, keyRef{hash: h, byHash: true})
	}
	return out, nil
}

// oneRef returns the one key of a command that takes KEY or --hash HASH.
func (a *app) oneRef(name string, args []string) (keyRef, error) {
	refs, err := a.refs(args)
	if err != nil {
		return keyRef{}, err
	}
	if len(refs) != 1 {
		return keyRef{}, usagef("%s: give one KEY, or --hash HASH\nusage: simdr FILE %s KEY | --hash HASH", name, name)
	}
	return refs[0], nil
}

// ---- read -------------------------------------------------------------------

var cmdRead = &command{
	name: "read", aliases: []string{"get"}, args: "KEY... | --hash HASH",
	summary: "print the value of KEY (or of several keys, framed)",
	help: `
Writes the value of KEY to stdout (or to --output FILE) byte for byte, straight
from the file's memory mapping. When stdout is a terminal a newline follows the
value; when it is a pipe or a file, nothing is added. A missing key prints
'key "KEY" not found' on stderr and exits 1 (and --output FILE is not created).
--hash HASH reads the key whose hash is HASH (16 hex digits, as list prints
them); it may be repeated, and mixed with KEYs.

Several keys are read from one consistent snapshot and framed, so that any
bytes can be told apart: for each key, in order, a header line
    "KEY" SIZE
(the key quoted as a Go string; a --hash key as its 16 hex digits), then SIZE
bytes of value and a newline. A missing key has the header line
    "KEY" -
and no value; read goes on with the others, says on stderr which were missing
and exits 1.

--json prints an array, one object per key, in order:
{"key": KEY, "value_b64": BASE64} (a key that is not UTF-8 as "key_b64", a
--hash key as "hash"; value_b64 null when missing, and exit 1).

--output FILE (-o) writes to FILE instead of stdout: into a temporary file
beside it, renamed over FILE once complete, so FILE is never half-written
(a FILE that exists and is not a regular file, such as /dev/stdout, is written
directly). FILE must exist: read never creates the store file.`,
	examples: []string{
		`simdr data.simdr read greeting`,
		`simdr data.simdr get photo -o photo.jpg`,
		`simdr data.simdr read backup.tar | tar x`,
		`simdr data.simdr read a b c`,
		`simdr data.simdr read a b --json | jq -r '.[1].value_b64' | base64 -d`,
		`simdr data.simdr read --hash f01e5cbbc09d4fc4`,
	},
	minArgs: 0, maxArgs: -1, json: true,
	flags: func(fs *flag.FlagSet, o *opts) {
		fs.StringVar(&o.bufferSize, "buffer-size", o.bufferSize, "accepted for compatibility with the Rust original; the value is written straight from the mapping, so it has no effect (`SIZE`: 64K, 1M, ...)")
		fs.StringVar(&o.bufferSize, "b", o.bufferSize, "")
		fs.StringVar(&o.output, "output", o.output, "write to `FILE` instead of stdout (complete or not at all)")
		fs.StringVar(&o.output, "o", o.output, "")
		hashFlag(fs, o)
	},
	run: runRead,
}

func runRead(a *app, file string, args []string) (err error) {
	if a.o.bufferSize != "" {
		if _, err := parseSize(a.o.bufferSize); err != nil {
			return usagef("read: --buffer-size: %v", err)
		}
	}
	refs, err := a.refs(args)
	if err != nil {
		return err
	}
	if len(refs) == 0 {
		return usagef("read: give KEY (one or more), or --hash HASH\nusage: simdr FILE read KEY... | --hash HASH")
	}
	s, err := a.openRead(file)
	if err != nil {
		return err
	}
	defer closeStore(s, &err)
	hashes := make([]uint64, len(refs))
	for i, r := range refs {
		hashes[i] = r.hash
	}
	ents, err := s.GetManyHash(hashes) // one snapshot
	if err != nil {
		return fmt.Errorf("read: %w", err)
	}
	single := len(refs) == 1 && !a.o.json
	if single && !ents[0].Exists() {
		return refs[0].missing() // before --output is created
	}
	out, commit, err := a.openOutput(file)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := commit(err == nil); err == nil {
			err = cerr
		}
	}()
	switch {
	case single:
		if _, err := ents[0].WriteTo(out); err != nil {
			return fmt.Errorf("read %s: %w", refs[0].label(), err)
		}
		if (a.o.output == "" || a.o.output == "-") && isTerminal(a.stdout.f) {
			_, err = io.WriteString(out, "\n")
		}
		return err
	case a.o.json:
		err = writeValuesJSON(out, refs, ents)
	default:
		err = writeFramed(out, refs, ents)
	}
	if err != nil {
		return fmt.Errorf("read: %w", err)
	}
	missing := false
	for i, e := range ents {
		if !e.Exists() {
			a.warn("%v", refs[i].missing())
			missing = true
		}
	}
	if missing {
		return errReported
	}
	return nil
}

// writeFramed writes the values in read's framing for several keys.
func writeFramed(w io.Writer, refs []keyRef, ents []simdr.Entry) error {
	for i, r := range refs {
		label := strconv.Quote(r.key)
		if r.byHash {
			label = fmt.Sprintf("%016x", r.hash)
		}
		if !ents[i].Exists() {
			if _, err := fmt.Fprintf(w, "%s -\n", label); err != nil {
				return err
			}
			continue
		}
		if _, err := fmt.Fprintf(w, "%s %d\n", label, ents[i].Len()); err != nil {
			return err
		}
		if _, err := ents[i].WriteTo(w); err != nil {
			return err
		}
		if _, err := io.WriteString(w, "\n"); err != nil {
			return err
		}
	}
	return nil
}

// writeValuesJSON writes read --json: values are base64-encoded as they
// stream out, never held twice.
func writeValuesJSON(w io.Writer, refs []keyRef, ents []simdr.Entry) error {
	if _, err := io.WriteString(w, "["); err != nil {
		return err
	}
	for i, r := range refs {
		sep := ",\n  "
		if i == 0 {
			sep = "\n  "
		}
		var name string
		switch {
		case r.byHash:
			name = fmt.Sprintf(`"hash":"%016x"`, r.hash)
		default:
			name = keyField(r.key)
		}
		if _, err := io.WriteString(w, sep+"{"+name+`,"value_b64":`); err != nil {
			return err
		}
		if !ents[i].Exists() {
			if _, err := io.WriteString(w, "null}"); err != nil {
				return err
			}
			continue
		}
		io.WriteString(w, `"`)
		enc := base64.NewEncoder(base64.StdEncoding, w)
		if _, err := ents[i].WriteTo(enc); err != nil {
			return err
		}
		enc.Close()
		if _, err := io.WriteString(w, `"}`); err != nil {
			return err
		}
	}
	if len(refs) > 0 {
		io.WriteString(w, "\n")
	}
	_, err := io.WriteString(w, "]\n")
	return err
}

// openOutput returns where read, reading the store file, writes: stdout, or
// --output FILE through a temporary file that commit(true) renames over FILE
// (commit(false) removes it). A FILE that exists and is not a regular file
// is written directly; the store file itself (or one of its side files) is
// refused.
func (a *app) openOutput(file string) (io.Writer, func(ok bool) error, error) {
	name := a.o.output
	if name == "" || name == "-" {
		return a.stdout, func(bool) error { return nil }, nil
	}
	fi, err := os.Stat(name)
	if err != nil {
		fi = nil
	}
	if fi != nil && isStoreFile(storeFiles(file), fi) {
		// Renamed over the store, the value would replace it.
		return nil, nil, fmt.Errorf("read: --output %s is the store file %s (or a file the engine keeps beside it): refused", name, file)
	}
	if fi != nil && !fi.Mode().IsRegular() {
		f, err := os.OpenFile(name, os.O_WRONLY, 0)
		if err != nil {
			return nil, nil, fmt.Errorf("read: --output: %w", err)
		}
		return f, func(bool) error { return f.Close() }, nil
	}
	tmp, err := createTemp(name)
	if err != nil {
		return nil, nil, fmt.Errorf("read: --output: %w", err)
	}
	commit := func(ok bool) error {
		if !ok {
			tmp.Close()
			os.Remove(tmp.Name())
			return nil
		}
		// Replacing a file: keep its permissions (a 0600 secret stays private).
		if err := commitTemp(tmp, name, fi); err != nil {
			return fmt.Errorf("read: --output: %w", err)
		}
		return nil
	}
	return tmp, commit, nil
}

// createTemp creates a new file beside name, to be renamed over it, with
// the permissions a new file gets (0666 less the umask), not CreateTemp's
// 0600.
func createTemp(name string) (*os.File, error) {
	dir, base := filepath.Dir(name), filepath.Base(name)
	for i := 0; ; i++ {
		f, err := os.OpenFile(filepath.Join(dir, fmt.Sprintf(".%s.tmp%d", base, rand.Uint32())), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o666)
		if !errors.Is(err, fs.ErrExist) || i == 100 {
			return f, err
		}
	}
}

// commitTemp closes tmp (from createTemp) and renames it over name, giving
// it old's permissions when old (what name was) is not nil; on failure it
// removes tmp.
func commitTemp(tmp *os.File, name string, old fs.FileInfo) error {
	var err error
	if old != nil {
		err = tmp.Chmod(old.Mode().Perm())
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), name)
	}
	if err != nil {
		os.Remove(tmp.Name())
	}
	return err
}

// ---- has / delete ---------------------------------------------------------------

var cmdHas = &command{
	name: "has", args: "KEY | --hash HASH",
	summary: "exit 0 if KEY has a value, 1 if not (prints nothing)",
	help: `
Exits 0 when KEY has a value and 1 when it has none, printing nothing either
way, for scripts: 'if simdr data.simdr has k; then ...'. --hash HASH tests the
key whose hash is HASH. Errors (a missing or unreadable FILE) are printed and
exit 1 too; FILE must exist and is only read.`,
	examples: []string{
		`simdr data.simdr has greeting && echo present`,
		`simdr data.simdr has --hash f01e5cbbc09d4fc4`,
	},
	minArgs: 0, maxArgs: 1,
	flags: hashFlag,
	run: func(a *app, file string, args []string) (err error) {
		r, err := a.oneRef("has", args)
		if err != nil {
			return err
		}
		s, err := a.openRead(file)
		if err != nil {
			return err
		}
		defer closeStore(s, &err)
		if _, err := s.GetHash(r.hash); err != nil {
			if errors.Is(err, simdr.ErrNotFound) {
				return errReported // absent: exit 1, nothing said
			}
			return err
		}
		return nil
	},
}

var cmdDelete = &command{
	name: "delete", args: "KEY | --hash HASH",
	summary: "delete KEY",
	help: `
Deletes KEY by appending a delete marker. A key that has no value is an error
(exit 1) unless --force is given. --hash HASH deletes the key whose hash is
HASH (16 hex digits, as list prints them). FILE must exist.`,
	examples: []string{
		`simdr data.simdr delete greeting`,
		`simdr data.simdr delete --force maybe-there`,
		`simdr data.simdr delete --hash f01e5cbbc09d4fc4`,
	},
	minArgs: 0, maxArgs: 1,
	flags: func(fs *flag.FlagSet, o *opts) {
		fs.BoolVar(&o.force, "force", o.force, "succeed when KEY has no value")
		fs.BoolVar(&o.force, "f", o.force, "")
		hashFlag(fs, o)
	},
	run: func(a *app, file string, args []string) (err error) {
		r, err := a.oneRef("delete", args)
		if err != nil {
			return err
		}
		s, err := a.openWrite(file, true)
		if err != nil {
			return err
		}
		defer closeStore(s, &err)
		if _, err := s.GetHash(r.hash); errors.Is(err, simdr.ErrNotFound) {
			if a.o.force {
				return nil
			}
			return r.missing()
		}
		if err := s.DeleteHash(r.hash); err != nil {
			return fmt.Errorf("delete %s: %w", r.label(), err)
		}
		a.info("Deleted %s", r.label())
		return nil
	},
}
