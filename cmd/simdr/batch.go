package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/simdr-go/simdr"
	"github.com/simdr-go/simdr/internal/format"
	"github.com/simdr-go/simdr/internal/ttlms"
)

// The bounds of one atomic batch read by "simdr FILE batch". Without
// --chunk the whole input is one batch, so it is held in memory until it
// has all been read and checked: these bounds cap that memory. The op count
// is the server's (server.MaxItems).
const (
	batchMaxOps   = 1 << 20  // operations in one batch
	batchMaxBytes = 64 << 20 // bytes of keys and values in one batch
	batchMaxLine  = 256 << 20
)

var cmdBatch = &command{
	name: "batch", args: "",
	summary: "apply puts and deletes read from stdin (JSON lines) as one atomic batch",
	help: `
Reads operations from stdin, one JSON object a line, in the op format of the
server's JSON batch (POST /v1/batch):
    {"op":"put","key":"k","value":"v"}
    {"op":"put","key_b64":"AAE=","value_b64":"//8="}
    {"op":"delete","key":"k"}
    {"op":"put","key":"session","value":"t","ttl_ms":600000}
key and value are UTF-8 strings; key_b64 and value_b64 base64 (standard, with
padding) for any bytes. ttl_ms (a put's, optional) makes the value expire that
many milliseconds after the batch is applied: a positive integer, digits only.
Blank lines are skipped. The operations are applied in
order as one atomic batch (Store.Apply): other readers see all of it or none.

A malformed line (bad JSON, an unknown field or op, a missing key or value, a
value that cannot be stored: empty or the single byte 0x00, a ttl_ms that is
not a positive integer, a key with the reserved prefix) fails the whole
batch with its line number, and nothing is written.

The whole input is one batch, held in memory until it has been read and
checked, so it is bounded: at most 1,048,576 operations and 64 MiB of keys and
values. A larger input fails (nothing written) unless --chunk N is given: then
every N operations (or 64 MiB, whichever comes first) are applied as one
atomic batch as they are read, in bounded memory whatever the input's size.
With --chunk, a malformed line fails its own chunk and stops; the chunks
before it stay applied (the message says up to which line). A missing FILE is
created. With a terminal on stdin, batch fails at once rather than wait.`,
	examples: []string{
		`simdr data.simdr batch < ops.jsonl`,
		`printf '%s\n' '{"op":"put","key":"a","value":"1"}' '{"op":"delete","key":"b"}' | simdr data.simdr batch`,
		`generate-ops | simdr data.simdr batch --chunk 10000`,
	},
	minArgs: 0, maxArgs: 0,
	flags: func(fs *flag.FlagSet, o *opts) {
		fs.IntVar(&o.chunk, "chunk", o.chunk, "apply every `N` operations as their own atomic batch (for inputs past one batch's bounds)")
	},
	run: runBatch,
}

// batchOp is one line: the server's JSON batch op.
type batchOp struct {
	Op       string  `json:"op"`
	Key      *string `json:"key"`
	KeyB64   []byte  `json:"key_b64"`
	Value    *string `json:"value"`
	ValueB64 []byte  `json:"value_b64"`
	TTLms    *int64  `json:"ttl_ms"`
}

// parsedOp is one decoded line.
type parsedOp struct {
	key, value []byte
	put        bool
	ttl        time.Duration // a put's, 0 for none
}

// field is a key or value given as a string or as base64.
func field(s *string, b64 []byte, name string) ([]byte, error) {
	switch {
	case s != nil && b64 != nil:
		return nil, fmt.Errorf("both %s and %s_b64 given", name, name)
	case s != nil:
		return []byte(*s), nil
	case b64 != nil:
		return b64, nil
	}
	return nil, fmt.Errorf("missing %s (or %s_b64)", name, name)
}

// parseOp decodes one line: its key, and its value (and ttl) for a put.
func parseOp(line []byte) (parsedOp, error) {
	var op batchOp
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&op); err != nil {
		return parsedOp{}, err
	}
	// Only spaces may follow the object (dec.More alone lets a stray "}" or
	// "]" through).
	if rest := bytes.TrimSpace(line[dec.InputOffset():]); len(rest) > 0 {
		if dec.More() {
			return parsedOp{}, errors.New("more than one JSON value on the line")
		}
		return parsedOp{}, fmt.Errorf("%q after the JSON object", rest[:min(len(rest), 20)])
	}
	key, err := field(op.Key, op.KeyB64, "key")
	if err != nil {
		return parsedOp{}, err
	}
	if bytes.HasPrefix(key, []byte(reservedPrefix)) {
		return parsedOp{}, fmt.Errorf("key %q: %w", key, simdr.ErrReservedKey)
	}
	switch op.Op {
	case "put":
		value, err := field(op.Value, op.ValueB64, "value")
		if err != nil {
			return parsedOp{}, err
		}
		if !format.ValueOK(value) {
			return parsedOp{}, fmt.Errorf("put %q: %w", key, simdr.ErrInvalidValue)
		}
		p := parsedOp{key: key, value: value, put: true}
		if op.TTLms != nil {
			if *op.TTLms <= 0 {
				return parsedOp{}, fmt.Errorf("put %q: ttl_ms %d: %w", key, *op.TTLms, simdr.ErrInvalidTTL)
			}
			p.ttl = ttlms.Duration(*op.TTLms)
		}
		return p, nil
	case "delete":
		if op.Value != nil || op.ValueB64 != nil {
			return parsedOp{}, errors.New("a delete has no value")
		}
		if op.TTLms != nil {
			return parsedOp{}, errors.New("a delete has no ttl_ms")
		}
		return parsedOp{key: key}, nil
	}
	return parsedOp{}, fmt.Errorf("op must be \"put\" or \"delete\", not %q", op.Op)
}

// readLine reads one line (without its newline) of at most max bytes.
func readLine(br *bufio.Reader, buf []byte, max int) ([]byte, error) {
	buf = buf[:0]
	for {
		part, err := br.ReadSlice('\n')
		buf = append(buf, part...)
		if len(buf) > max {
			return nil, fmt.Errorf("line longer than %s", formatBytes(int64(max)))
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err == io.EOF && len(buf) > 0 {
			err = nil
		}
		return bytes.TrimSuffix(bytes.TrimSuffix(buf, []byte("\n")), []byte("\r")), err
	}
}

func runBatch(a *app, file string, _ []string) (err error) {
	if a.o.chunk < 0 {
		return usagef("batch: --chunk must be positive")
	}
	if isTerminal(a.stdin) {
		return errors.New("batch: reads the operations from stdin: pipe them in (one JSON object a line)")
	}
	// FILE is opened at the first apply (at the end without --chunk): a
	// malformed input writes nothing, and creates no missing FILE either.
	var s *simdr.Store
	open := func() error {
		if s != nil {
			return nil
		}
		var err error
		s, err = a.openWrite(file, false)
		return err
	}
	defer func() {
		if s != nil {
			closeStore(s, &err)
		}
	}()
	var (
		b              simdr.Batch
		size           int   // bytes of keys and values in b
		applied        int   // ops applied
		batches        int   // batches applied
		lastApplied    int   // the last line of the last batch applied
		line           int   // the current line number
		puts, deletes  int64 // over the whole input
		buf            []byte
		br             = bufio.NewReaderSize(a.stdin, 1<<20)
		appliedMessage = func() string {
			if applied == 0 {
				return "nothing written"
			}
			if applied == 1 {
				return fmt.Sprintf("the operation of line %d stays applied", lastApplied)
			}
			return fmt.Sprintf("the %s of lines 1-%d stay applied", countUnit(int64(applied), "operation"), lastApplied)
		}
	)
	flush := func() error {
		if b.Len() == 0 {
			return nil
		}
		if err := open(); err != nil {
			return err
		}
		if err := s.Apply(&b); err != nil {
			return fmt.Errorf("batch: apply lines %d-%d: %w (%s)", lastApplied+1, line, err, appliedMessage())
		}
		applied += b.Len()
		lastApplied = line
		batches++
		b.Reset()
		size = 0
		return nil
	}
	for {
		l, rerr := readLine(br, buf, batchMaxLine)
		if rerr != nil && rerr != io.EOF {
			return fmt.Errorf("batch: line %d: %w (%s)", line+1, rerr, appliedMessage())
		}
		if rerr == io.EOF && len(l) == 0 {
			break
		}
		line++
		buf = l
		if len(bytes.TrimSpace(l)) > 0 {
			op, err := parseOp(l)
			if err != nil {
				return fmt.Errorf("batch: line %d: %w (%s)", line, err, appliedMessage())
			}
			n := len(op.key) + len(op.value)
			if b.Len() > 0 && (b.Len()+1 > batchMaxOps || size+n > batchMaxBytes) {
				// This op would take the batch past its bounds.
				if a.o.chunk == 0 {
					return fmt.Errorf("batch: line %d: the input is larger than one atomic batch holds (%s, %s of keys and values): nothing written; apply it in chunks with --chunk N", line, countUnit(batchMaxOps, "operation"), formatBytes(batchMaxBytes))
				}
				line-- // the chunk ends with the line before
				err := flush()
				line++
				if err != nil {
					return err
				}
			}
			switch {
			case op.put && op.ttl > 0:
				b.PutTTL(op.key, op.value, op.ttl)
				puts++
			case op.put:
				b.Put(op.key, op.value)
				puts++
			default:
				b.Delete(op.key)
				deletes++
			}
			size += n
			if a.o.chunk > 0 && b.Len() >= a.o.chunk {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		if rerr == io.EOF {
			break
		}
	}
	if err := flush(); err != nil {
		return err
	}
	if err := open(); err != nil { // an empty input still creates FILE
		return err
	}
	msg := fmt.Sprintf("Applied %s (%s, %s)", countUnit(int64(applied), "operation"), countUnit(puts, "put"), countUnit(deletes, "delete"))
	if a.o.chunk > 0 {
		msg += " in " + countUnit(int64(batches), "atomic batch")
	} else {
		msg += " in one batch"
	}
	a.info("%s", msg)
	return nil
}
