package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/signal"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/simdr-go/simdr"
)

// The import manifest. The store keeps only the hash of each key, so the keys
// of imported files cannot be listed from the store alone. import therefore
// also stores, in the same file, a manifest: the list of relative paths it
// imported, under a reserved key. export reads it back. Its key is
// manifestName for files imported without a namespace, and
// NamespaceKey(NS, manifestName) for a namespace NS, so each namespace has its
// own manifest, beside its files. manifestName is framed by the bytes 0xF7 and
// 0xFD, which never occur in UTF-8 text, as the Rust original frames its
// reserved key prefixes: no imported path can collide with it.
//
// The manifest's value is text: the header line below, then one path a line,
// quoted as a Go string literal (strconv.Quote), so any byte can appear in a
// path. Paths are slash-separated and relative to the imported directory,
// sorted, each once. A second import into the same namespace merges its paths
// into the manifest.
const (
	manifestName   = "\xf7simdr:import-manifest\xfd"
	manifestHeader = "simdr import manifest v1"
)

func manifestKey(ns string) []byte { return storeKey(ns, manifestName) }

// storeKey is the key under which the file at relative path rel is stored.
func storeKey(ns, rel string) []byte {
	if ns == "" {
		return []byte(rel)
	}
	return simdr.NamespaceKey([]byte(ns), []byte(rel))
}

func encodeManifest(paths []string) []byte {
	var b bytes.Buffer
	b.WriteString(manifestHeader + "\n")
	for _, p := range paths {
		b.WriteString(strconv.Quote(p))
		b.WriteByte('\n')
	}
	return b.Bytes()
}

func decodeManifest(v []byte) ([]string, error) {
	lines := strings.Split(strings.TrimSuffix(string(v), "\n"), "\n")
	if len(lines) == 0 || lines[0] != manifestHeader {
		return nil, errors.New("the import manifest is not in a known format")
	}
	paths := make([]string, 0, len(lines)-1)
	for i, l := range lines[1:] {
		p, err := strconv.Unquote(l)
		if err != nil {
			return nil, fmt.Errorf("import manifest line %d: %w", i+2, err)
		}
		paths = append(paths, p)
	}
	return paths, nil
}

// readManifest returns the paths of the manifest of namespace ns, or an error
// matching simdr.ErrNotFound when there is none.
func readManifest(s *simdr.Store, ns string) ([]string, error) {
	e, err := s.Get(manifestKey(ns))
	if err != nil {
		return nil, err
	}
	return decodeManifest(e.Bytes())
}

var cmdImport = &command{
	name: "import", args: "DIR",
	summary: "store every regular file under DIR, keyed by its relative path",
	help: `
Stores each regular file under DIR (recursively; symbolic links to regular
files included, linked directories not followed) under its slash-separated path
relative to DIR, as the Rust original's file-import extension does: DIR/a/b.txt
becomes key "a/b.txt". With --namespace NS the key is NamespaceKey(NS, path),
the original's namespaced key. Files are streamed, whatever their size.

The store keeps only key hashes, so import also records the imported paths in
an import manifest inside the store (one per namespace, merged across imports);
export and list read it. Empty files (and files holding the single byte 0x00)
cannot be stored in the format: they are skipped with a warning. A file that
cannot be opened is reported and the others imported (exit 1). Ctrl-C stops
the import (the file being read is not stored) and the manifest records what
was. A missing FILE is created. Shows a progress bar on stderr when stderr is
a terminal.`,
	examples: []string{
		`simdr site.simdr import ./public`,
		`simdr site.simdr import ./public --namespace assets`,
		`simdr site.simdr read css/site.css`,
	},
	minArgs: 1, maxArgs: 1,
	flags: func(fs *flag.FlagSet, o *opts) {
		fs.StringVar(&o.namespace, "namespace", o.namespace, "store under namespace `NS` (NamespaceKey)")
		fs.StringVar(&o.namespace, "n", o.namespace, "")
	},
	run: runImport,
}

type importFile struct {
	abs, rel string
	size     int64
}

// collect walks dir and returns its regular files in lexical order. What it
// cannot take is returned in problems, one message each, and the walk goes on:
// an unreadable subdirectory (skipped whole), a symbolic link to nothing, a
// file whose relative path is the import manifest's reserved key. Only an
// unreadable dir itself fails the walk.
func collect(dir string) (files []importFile, problems []string, err error) {
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == dir {
				return err
			}
			problems = append(problems, fmt.Sprintf("skipped %s: %s", p, describe(unwrapPath(err))))
			if d != nil && d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			return nil
		}
		fi, err := os.Stat(p) // follows a symbolic link
		if err != nil {
			if d.Type()&fs.ModeSymlink != 0 && errors.Is(err, fs.ErrNotExist) {
				problems = append(problems, fmt.Sprintf("skipped %s: a symbolic link to nothing (dangling)", p))
			} else {
				problems = append(problems, fmt.Sprintf("skipped %s: %s", p, describe(unwrapPath(err))))
			}
			return nil
		}
		if !fi.Mode().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if rel == manifestName {
			problems = append(problems, fmt.Sprintf("refused %q: its name is the import manifest's reserved key, which import keeps for its own list of paths", p))
			return nil
		}
		files = append(files, importFile{abs: p, rel: rel, size: fi.Size()})
		return nil
	})
	return files, problems, err
}

// unwrapPath returns the system error inside a *fs.PathError whose path the
// message already gives, or err.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", pe.Op, pe.Err)
	}
	return err
}

// countingReader counts the bytes read into a progress bar, and fails once
// ctx is done.
type countingReader struct {
	ctx context.Context
	r   io.Reader
	p   *progress
}

func (c countingReader) Read(b []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := c.r.Read(b)
	c.p.add(int64(n))
	return n, err
}

func runImport(a *app, file string, args []string) (err error) {
	dir, ns := args[0], a.o.namespace
	if fi, err := os.Stat(dir); err != nil {
		return err
	} else if !fi.IsDir() {
		return fmt.Errorf("import: %s is not a directory", dir)
	}
	files, problems, err := collect(dir)
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	s, err := a.openWrite(file, false)
	if err != nil {
		return err
	}
	defer closeStore(s, &err)
	// Never import the store into itself (it would grow as it is read), nor
	// the caches beside it (the state file changes as the import writes).
	if sfs := storeFiles(file); len(sfs) > 0 {
		files = slices.DeleteFunc(files, func(f importFile) bool {
			fi, err := os.Stat(f.abs)
			return err == nil && isStoreFile(sfs, fi)
		})
	}
	old, err := readManifest(s, ns)
	if err != nil && !errors.Is(err, simdr.ErrNotFound) {
		return fmt.Errorf("import: %w", err)
	}
	var total int64
	for _, f := range files {
		total += f.size
	}
	// Ctrl-C stops between files, or in the middle of one (which is then not
	// stored), and the manifest still records what was stored.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	p := a.newProgress("importing", total)
	p.nitem = int64(len(files))
	p.start()
	var stored, skipped []string
	var bytesIn int64
	var failed error // what makes import exit 1, after recording what was stored
	if len(problems) > 0 {
		p.finish()
		for _, pr := range problems {
			a.warn("import: %s", pr)
		}
		p.start()
		failed = errReported
	}
loop:
	for _, f := range files {
		if ctx.Err() != nil {
			failed = errors.New("import: interrupted")
			break
		}
		n, err := importOne(ctx, s, storeKey(ns, f.rel), f.abs, p)
		p.items.Add(1)
		switch {
		case err == nil:
			stored = append(stored, f.rel)
			bytesIn += n
		case ctx.Err() != nil:
			failed = errors.New("import: interrupted")
			break loop
		case errors.Is(err, simdr.ErrInvalidValue):
			skipped = append(skipped, f.rel)
		case errors.As(err, new(*openFileError)):
			// An unreadable file: the others are still imported; exit 1 at the end.
			p.finish()
			a.warn("import: %s", describe(err))
			p.start()
			failed = errReported
		default:
			failed = fmt.Errorf("import %s: %w", f.abs, err)
			break loop
		}
	}
	p.finish()
	if len(stored) > 0 {
		if err := s.Put(manifestKey(ns), encodeManifest(merge(old, stored))); err != nil {
			merr := fmt.Errorf("import: write the manifest: %w", err)
			if failed == nil || errors.Is(failed, errReported) {
				return merr
			}
			return errors.Join(failed, merr)
		}
	}
	for _, rel := range skipped {
		a.warn("import: skipped %q: an empty file (or the single byte 0x00) cannot be stored", rel)
	}
	where := file
	if ns != "" {
		where += fmt.Sprintf(" (namespace %q)", ns)
	}
	a.info("Imported %s (%s) into %s", countUnit(int64(len(stored)), "file"), formatBytes(bytesIn), where)
	return failed
}

// openFileError marks a file import could not open.
type openFileError struct{ err error }

func (e *openFileError) Error() string { return e.err.Error() }
func (e *openFileError) Unwrap() error { return e.err }

// importOne stores the file at abs under key. The file is checked again
// once open (fstat, not the walk's stat): replaced since the walk by a FIFO
// or a link to a device such as /dev/zero (in a directory others can
// write), it would block the import or feed it endless bytes. O_NONBLOCK
// keeps the open of a FIFO from waiting for a writer.
func importOne(ctx context.Context, s *simdr.Store, key []byte, abs string, p *progress) (int64, error) {
	f, err := os.OpenFile(abs, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return 0, &openFileError{err}
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, &openFileError{err}
	}
	if !fi.Mode().IsRegular() {
		return 0, &openFileError{fmt.Errorf("%s is no longer a regular file (%s, since the walk): not imported", abs, fileKind(fi.Mode()))}
	}
	return s.PutReader(key, countingReader{ctx, f, p})
}

// merge returns the sorted union of a and b.
func merge(a, b []string) []string {
	m := slices.Concat(a, b)
	slices.Sort(m)
	return slices.Compact(m)
}

var cmdExport = &command{
	name: "export", args: "DIR",
	summary: "write imported files back out under DIR",
	help: `
The reverse of import: writes each file named in the import manifest (of
--namespace NS, if given) to DIR/PATH, creating DIR and subdirectories as
needed. Keys are not stored in the file, only their hashes, so export can only
write what a manifest (or --keys-from) names: files imported by the Rust
original, which writes no manifest, are exported by listing their paths with
--keys-from. Paths that would leave DIR (absolute, or with "..") are refused.
Existing files are not overwritten unless --force is given. Files deleted from
the store since the import are skipped with a warning. FILE must exist and is
only read.`,
	examples: []string{
		`simdr site.simdr export ./restored`,
		`simdr site.simdr export ./restored --namespace assets`,
		`(cd public && find . -type f | sed 's|^\./||') | simdr rust.bin export ./out --keys-from -`,
	},
	minArgs: 1, maxArgs: 1,
	flags: func(fs *flag.FlagSet, o *opts) {
		fs.StringVar(&o.namespace, "namespace", o.namespace, "export the files imported under namespace `NS`")
		fs.StringVar(&o.namespace, "n", o.namespace, "")
		fs.StringVar(&o.keysFrom, "keys-from", o.keysFrom, "also export the relative paths listed one a line in `FILE` (- for stdin)")
		fs.BoolVar(&o.force, "force", o.force, "overwrite existing files")
		fs.BoolVar(&o.force, "f", o.force, "")
	},
	run: runExport,
}

func runExport(a *app, file string, args []string) (err error) {
	dir, ns := args[0], a.o.namespace
	s, err := a.openRead(file)
	if err != nil {
		return err
	}
	defer closeStore(s, &err)
	paths, err := readManifest(s, ns)
	if errors.Is(err, simdr.ErrNotFound) {
		paths, err = nil, nil
		if a.o.keysFrom == "" {
			msg := "export: %s has no import manifest"
			if ns != "" {
				msg += fmt.Sprintf(" for namespace %q", ns)
			}
			return fmt.Errorf(msg+" (keys are not stored, only their hashes: list the paths with --keys-from)", file)
		}
	}
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	if a.o.keysFrom != "" {
		more, err := readLines(a, a.o.keysFrom)
		if err != nil {
			return fmt.Errorf("export: --keys-from: %w", err)
		}
		paths = merge(paths, more)
	}

	// Check every path first, so a refused export writes nothing (and
	// creates no DIR). Only an existing DIR can hold anything in the way.
	type item struct {
		rel string
		e   simdr.Entry
	}
	var items []item
	var total int64
	var root *os.Root
	switch fi, err := os.Stat(dir); {
	case err == nil && !fi.IsDir():
		return fmt.Errorf("export: %s is not a directory", dir)
	case err == nil:
		if root, err = os.OpenRoot(dir); err != nil {
			return fmt.Errorf("export: %w", err)
		}
		defer root.Close()
	case !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("export: %w", err)
	}
	var problems []string
	sfs := storeFiles(file)
	files := map[string]bool{}
	for _, rel := range paths {
		local := filepath.FromSlash(rel)
		if !filepath.IsLocal(local) || path.Clean(rel) != rel {
			problems = append(problems, fmt.Sprintf("%q is not a clean relative path", rel))
			continue
		}
		e, err := s.Get(storeKey(ns, rel))
		if errors.Is(err, simdr.ErrNotFound) {
			a.warn("export: skipped %q: not in the store (deleted since the import?)", rel)
			continue
		}
		if err != nil {
			return fmt.Errorf("export %q: %w", rel, err)
		}
		if root != nil {
			if pr := checkExportPath(root, dir, local, a.o.force, sfs); pr != "" {
				problems = append(problems, pr)
				continue
			}
		}
		files[rel] = true
		items = append(items, item{rel, e})
		total += int64(e.Len())
	}
	// A path that is also the directory of another ("a" and "a/b").
	for _, it := range items {
		for d := path.Dir(it.rel); d != "."; d = path.Dir(d) {
			if files[d] {
				problems = append(problems, fmt.Sprintf("%q is both a file and the directory of %q", d, it.rel))
			}
		}
	}
	if len(problems) > 0 {
		for _, pr := range problems {
			a.warn("export: %s", pr)
		}
		a.warn("export: nothing written")
		return errReported
	}
	if root == nil {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("export: %w", err)
		}
		if root, err = os.OpenRoot(dir); err != nil {
			return fmt.Errorf("export: %w", err)
		}
		defer root.Close()
	}

	// Ctrl-C (SIGINT, SIGTERM) stops between files: each file written is
	// whole, and no temporary file is left behind.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	p := a.newProgress("exporting", total)
	p.nitem = int64(len(items))
	p.start()
	defer p.finish()
	for i, it := range items {
		if ctx.Err() != nil {
			p.finish()
			return fmt.Errorf("export: interrupted: %s of %d written to %s", countUnit(int64(i), "file"), len(items), dir)
		}
		local := filepath.FromSlash(it.rel)
		if d := filepath.Dir(local); d != "." {
			if err := root.MkdirAll(d, 0o755); err != nil {
				return fmt.Errorf("export %q: %w", it.rel, err)
			}
		}
		if err := writeFile(root, local, it.e, a.o.force); err != nil {
			return fmt.Errorf("export %q: %w", it.rel, err)
		}
		p.add(int64(it.e.Len()))
		p.items.Add(1)
	}
	p.finish()
	a.info("Exported %s (%s) to %s", countUnit(int64(len(items)), "file"), formatBytes(total), dir)
	return nil
}

// checkExportPath says what, under root (DIR), would stop export from
// writing local there, or "" if nothing: a parent that is not a directory, a
// symbolic link that leads out of DIR (os.Root refuses to follow it) or to
// nothing, an existing file (unless force), a directory in the file's place,
// the store file being exported or a cache beside it (one of store, from
// storeFiles: written over, it would destroy the store as it is read).
func checkExportPath(root *os.Root, dir, local string, force bool, store []fs.FileInfo) string {
	parts := strings.Split(local, string(filepath.Separator))
	for i := 1; i <= len(parts); i++ {
		sub := filepath.Join(parts[:i]...)
		shown := filepath.Join(dir, sub)
		li, err := root.Lstat(sub)
		if errors.Is(err, fs.ErrNotExist) {
			return "" // nothing further down exists either
		}
		if err != nil {
			return fmt.Sprintf("%s: %s", shown, describe(unwrapPath(err)))
		}
		fi := li
		if li.Mode()&fs.ModeSymlink != 0 {
			if fi, err = root.Stat(sub); err != nil {
				return fmt.Sprintf("%s is a symbolic link that leads out of %s or to nothing: export writes only inside %s", shown, dir, dir)
			}
		}
		last := i == len(parts)
		switch {
		case !last && !fi.IsDir():
			return fmt.Sprintf("%s is not a directory", shown)
		case last && fi.IsDir():
			return fmt.Sprintf("%s is a directory", shown)
		case last && isStoreFile(store, fi):
			return fmt.Sprintf("%s is the store file being exported (or a file the engine keeps beside it)", shown)
		case last && !force:
			return fmt.Sprintf("%s exists (use --force to overwrite)", shown)
		case last && !fi.Mode().IsRegular():
			return fmt.Sprintf("%s exists and is not a regular file", shown)
		}
	}
	return ""
}

// writeFile writes e's value to name under root, whole or not at all: into
// a temporary file beside it, then linked to name (renamed over it with
// force, keeping the old file's permissions), so that a full disk or an
// interrupted export never leaves a part of a file under the name. With
// force, a name that is a symbolic link (one that stays inside DIR, as
// checkExportPath made sure) is written through, in place, as before.
func writeFile(root *os.Root, name string, e simdr.Entry, force bool) (err error) {
	var old fs.FileInfo
	if force {
		if li, lerr := root.Lstat(name); lerr == nil && li.Mode()&fs.ModeSymlink != 0 {
			f, err := root.OpenFile(name, os.O_WRONLY|os.O_TRUNC, 0)
			if err != nil {
				return err
			}
			_, err = e.WriteTo(f)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			return err
		} else if lerr == nil {
			old = li
		}
	}
	dir, base := filepath.Split(name)
	var f *os.File
	var tmp string
	for i := 0; ; i++ {
		tmp = filepath.Join(dir, fmt.Sprintf(".%s.tmp%d", base, rand.Uint32()))
		f, err = root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if !errors.Is(err, fs.ErrExist) || i == 100 {
			break
		}
	}
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			root.Remove(tmp)
		}
	}()
	_, err = e.WriteTo(f)
	if err == nil && old != nil {
		err = f.Chmod(old.Mode().Perm())
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if force {
		return root.Rename(tmp, name)
	}
	// Linked, not renamed: a file that appeared under name since the
	// check is not overwritten (EEXIST), as O_EXCL would have it.
	if err = root.Link(tmp, name); err != nil {
		if _, serr := root.Lstat(name); errors.Is(err, fs.ErrExist) || !errors.Is(serr, fs.ErrNotExist) {
			return err
		}
		return root.Rename(tmp, name) // a file system without hard links (FAT)
	}
	return root.Remove(tmp)
}

// readLines reads the non-empty lines of name ("-": stdin).
func readLines(a *app, name string) ([]string, error) {
	var r io.Reader = a.stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	var lines []string
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if l := strings.TrimSuffix(sc.Text(), "\r"); l != "" {
			lines = append(lines, l)
		}
	}
	return lines, sc.Err()
}
