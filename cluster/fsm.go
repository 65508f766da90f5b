package cluster

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"github.com/simdr-go/simdr"
	"github.com/simdr-go/simdr/internal/vfs"
)

// Reserved keys, kept in the store itself and replicated with it. Writes
// through the cluster to their hashes are refused (ErrReserved).
var (
	// AppliedKey holds the index (u64, little-endian) of the last raft log
	// entry applied to the store, written in the same simdr Batch as the
	// entry's own writes (last, so that a torn batch, which keeps a prefix,
	// keeps the index only if it keeps every write it covers).
	AppliedKey = []byte("\x00simdr/raft/applied")
	// MembersKey holds the JSON map of raft ID to HTTP URL of the members.
	MembersKey = []byte("\x00simdr/raft/members")
)

var (
	appliedHash = simdr.Hash(AppliedKey)
	membersHash = simdr.Hash(MembersKey)
)

// ErrReserved: a write to one of the cluster's reserved keys.
var ErrReserved = errors.New("cluster: the key is reserved for the cluster's own state")

// IsReserved reports whether a key hash is one of the reserved keys.
func IsReserved(h uint64) bool { return h == appliedHash || h == membersHash }

// Op is one put or delete of a batch, by key hash.
type Op struct {
	Hash  uint64
	Del   bool
	Value []byte // for a put; not empty
	// ExpiresAt, for a put, is when the value expires, in Unix milliseconds
	// (0: never). It is absolute, so that every replica gives the key the
	// same expiry whenever it applies the entry (simdr.Batch.PutHashExpiresAt).
	ExpiresAt int64
}

// Command kinds.
const (
	cmdBatch  = 'B'
	cmdRename = 'R'
	cmdMember = 'M'
	// cmdChecked wraps a command decided from the store as it was after the
	// entry at a given index (Node.ApplyChecked): applied only where the
	// last entry applied before it is that one (the same on every replica:
	// it depends on the log, not on timing), else nothing is written and
	// it fails with errChanged.
	cmdChecked = 'C'
)

// errChanged: a checked command's entry does not follow the entry its
// check saw last (another leader wrote in between): nothing was written.
var errChanged = errors.New("cluster: the store changed between the check and its write (another leader wrote meanwhile); nothing was written")

// encodeChecked wraps cmd, decided from the store holding entries up to
// after and no later one, as a checked command.
func encodeChecked(after uint64, cmd []byte) []byte {
	b := make([]byte, 0, 9+len(cmd))
	b = append(b, cmdChecked)
	b = binary.LittleEndian.AppendUint64(b, after)
	return append(b, cmd...)
}

// EncodeBatch encodes a batch of ops as a command for Node.Apply.
func EncodeBatch(ops []Op) []byte {
	n := 5
	for _, o := range ops {
		n += 9 + 8 + 4 + len(o.Value)
	}
	b := make([]byte, 0, n)
	b = append(b, cmdBatch)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(ops)))
	for _, o := range ops {
		if o.Del {
			b = append(b, 'D')
			b = binary.LittleEndian.AppendUint64(b, o.Hash)
			continue
		}
		if o.ExpiresAt != 0 {
			b = append(b, 'T') // a put with an expiry
			b = binary.LittleEndian.AppendUint64(b, o.Hash)
			b = binary.LittleEndian.AppendUint64(b, uint64(o.ExpiresAt))
		} else {
			b = append(b, 'P')
			b = binary.LittleEndian.AppendUint64(b, o.Hash)
		}
		b = binary.LittleEndian.AppendUint32(b, uint32(len(o.Value)))
		b = append(b, o.Value...)
	}
	return b
}

// EncodeRename encodes a rename of the key from to the key to, which each
// replica decides when it applies it: one that applies it after from's
// value expired (by its own clock) finds no value, and leaves to as it was,
// while the others replaced it. The server sends RenameCommand's blind
// batch through Node.ApplyChecked instead; this command is still applied
// as before, for the logs that hold it.
func EncodeRename(from, to []byte) []byte {
	b := []byte{cmdRename}
	b = binary.LittleEndian.AppendUint32(b, uint32(len(from)))
	b = append(b, from...)
	return append(b, to...)
}

func encodeMember(id, url string) []byte {
	b := []byte{cmdMember}
	b = binary.LittleEndian.AppendUint32(b, uint32(len(id)))
	b = append(b, id...)
	return append(b, url...)
}

var errBadCommand = errors.New("cluster: malformed command")

// build turns a command into the batch that applies it to st, and the
// error the client is answered with (a rename of a missing key, ...), in
// which case the batch holds only the applied index. prev is the index of
// the last entry applied to st before this one.
func build(st *simdr.Store, cmd []byte, b *simdr.Batch, prev uint64) (cerr error) {
	if len(cmd) == 0 {
		return errBadCommand
	}
	body := cmd[1:]
	switch cmd[0] {
	case cmdChecked:
		if len(body) < 9 || body[8] == cmdChecked {
			return errBadCommand
		}
		if binary.LittleEndian.Uint64(body) != prev {
			return errChanged
		}
		return build(st, body[8:], b, prev)
	case cmdBatch:
		if len(body) < 4 {
			return errBadCommand
		}
		n := binary.LittleEndian.Uint32(body)
		body = body[4:]
		for range n {
			if len(body) < 9 {
				return errBadCommand
			}
			kind, h := body[0], binary.LittleEndian.Uint64(body[1:])
			body = body[9:]
			if IsReserved(h) {
				b.Reset()
				return ErrReserved
			}
			var exp int64
			switch kind {
			case 'D':
				b.DeleteHash(h)
				continue
			case 'T':
				if len(body) < 8 {
					return errBadCommand
				}
				if exp = int64(binary.LittleEndian.Uint64(body)); exp <= 0 {
					return errBadCommand
				}
				body = body[8:]
			case 'P':
			default:
				return errBadCommand
			}
			if len(body) < 4 || uint64(len(body)-4) < uint64(binary.LittleEndian.Uint32(body)) {
				return errBadCommand
			}
			l := binary.LittleEndian.Uint32(body)
			if exp != 0 {
				b.PutHashExpiresAt(h, body[4:4+l], time.UnixMilli(exp))
			} else {
				b.PutHash(h, body[4:4+l])
			}
			body = body[4+l:]
		}
		return nil
	case cmdRename:
		if len(body) < 4 || uint64(len(body)-4) < uint64(binary.LittleEndian.Uint32(body)) {
			return errBadCommand
		}
		l := binary.LittleEndian.Uint32(body)
		from, to := body[4:4+l], body[4+l:]
		hf, ht := simdr.Hash(from), simdr.Hash(to)
		if IsReserved(hf) || IsReserved(ht) {
			return ErrReserved
		}
		if hf == ht {
			return fmt.Errorf("cluster: rename: %w", simdr.ErrSameKey)
		}
		e, err := st.GetHash(hf)
		if err != nil {
			return fmt.Errorf("cluster: rename: %w", err)
		}
		at, err := st.ExpiresAtHash(hf)
		if err != nil {
			return fmt.Errorf("cluster: rename: %w", err)
		}
		if at.IsZero() {
			b.PutHash(ht, e.Bytes()) // copied by the batch
		} else {
			b.PutHashExpiresAt(ht, e.Bytes(), at) // the expiry goes with the value
		}
		b.DeleteHash(hf)
		return nil
	case cmdMember:
		if len(body) < 4 || uint64(len(body)-4) < uint64(binary.LittleEndian.Uint32(body)) {
			return errBadCommand
		}
		l := binary.LittleEndian.Uint32(body)
		id, url := string(body[4:4+l]), string(body[4+l:])
		m := members(st)
		if url == "" {
			m[id] = removedMark // not asked back in by its own register loop
		} else {
			m[id] = url
		}
		j, _ := json.Marshal(m)
		b.Put(MembersKey, j)
		return nil
	}
	return errBadCommand
}

// removedMark is the members map's value for a removed node.
const removedMark = "!removed"

// members reads the members map from st (empty when none).
func members(st *simdr.Store) map[string]string {
	m := map[string]string{}
	if e, err := st.Get(MembersKey); err == nil {
		json.Unmarshal(e.Bytes(), &m)
	}
	return m
}

// appliedIndex reads the last applied index from st (0 when none).
func appliedIndex(st *simdr.Store) uint64 {
	e, err := st.Get(AppliedKey)
	if err != nil || e.Len() != 8 {
		return 0
	}
	return binary.LittleEndian.Uint64(e.Bytes())
}

// fsm applies the raft log to the node's store.
type fsm struct {
	n *Node

	mu      sync.Mutex // held by Apply and Restore (raft calls them in turn anyway)
	applied uint64     // the index in the store
	broken  error      // the store failed an Apply: nothing more is applied until a restart
	b       simdr.Batch
	// brokenNow is broken, for readers that must not wait for mu (a
	// compaction, Node.Exclusive, holds it): nil when not broken.
	brokenNow atomic.Pointer[error]
}

// setBroken sets broken (under mu).
func (f *fsm) setBroken(err error) {
	f.broken = err
	if err == nil {
		f.brokenNow.Store(nil)
		return
	}
	f.brokenNow.Store(&err)
}

// failed returns broken without waiting for mu (nil when not broken).
func (f *fsm) failed() error {
	if p := f.brokenNow.Load(); p != nil {
		return *p
	}
	return nil
}

// Result is what Apply gives back for one entry: the client's error, nil
// when the write was applied.
type result struct {
	err    error
	broken bool // err is the store's failure, not the command's: the entry is committed all the same
}

func (f *fsm) Apply(l *raft.Log) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.broken != nil {
		return result{f.broken, true}
	}
	if l.Index <= f.applied {
		return result{nil, false} // in the store already (a restart replays the log)
	}
	st, release := f.n.Acquire()
	defer release()
	f.b.Reset()
	var cerr error
	if l.Type == raft.LogCommand {
		cerr = build(st, l.Data, &f.b, f.applied)
		if cerr != nil {
			f.b.Reset()
		}
	}
	var idx [8]byte
	binary.LittleEndian.PutUint64(idx[:], l.Index)
	f.b.Put(AppliedKey, idx[:])
	err := st.Apply(&f.b)
	if errors.Is(err, simdr.ErrInvalidValue) || errors.Is(err, simdr.ErrReservedKey) { // the same on every node: apply only the index
		cerr = err
		f.b.Reset()
		f.b.Put(AppliedKey, idx[:])
		err = st.Apply(&f.b)
	}
	if err != nil {
		f.setBroken(fmt.Errorf("cluster: applying raft entry %d: %w", l.Index, err))
		return result{f.broken, true}
	}
	f.applied = l.Index
	f.n.appliedIdx.Store(l.Index)
	return result{cerr, false}
}

// Snapshot hands raft a snapshot of the store as it is when Persist runs:
// a backup, which holds the applied index it covers, so that entries it
// already holds are skipped after a restore.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	st, release := f.n.Acquire()
	return &snapshot{st: st, release: release}, nil
}

type snapshot struct {
	st      *simdr.Store
	release func()
}

// Persist streams a backup of the store into the sink (constant memory).
func (s *snapshot) Persist(sink raft.SnapshotSink) error {
	if err := s.st.Sync(); err != nil { // the log below the snapshot will go
		sink.Cancel()
		return fmt.Errorf("cluster: snapshot: %w", err)
	}
	if _, err := s.st.Backup(sink); err != nil {
		sink.Cancel()
		return fmt.Errorf("cluster: snapshot: %w", err)
	}
	return sink.Close()
}

func (s *snapshot) Release() { s.release() }

// Restore replaces the store with the snapshot in rc: written to a
// temporary file beside the store, synced, renamed over the store file (the
// directory synced), and opened; the node then serves the new store, and
// the old one is closed once the requests using it are done. A snapshot
// that is not a whole store file (it does not open, or ends in a torn tail)
// is refused before the rename: the store stays as it was.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	f.mu.Lock()
	defer f.mu.Unlock()
	path := f.n.path
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.raft-restore")
	if err != nil {
		return fmt.Errorf("cluster: restore: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := io.Copy(tmp, rc); err != nil {
		return fmt.Errorf("cluster: restore: receiving the snapshot: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("cluster: restore: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("cluster: restore: %w", err)
	}
	if err := wholeStore(tmp.Name()); err != nil {
		return fmt.Errorf("cluster: restore: the snapshot is not a whole store (the store is left as it was): %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("cluster: restore: %w", err)
	}
	ok = true
	if err := vfs.OS.SyncDir(filepath.Dir(path)); err != nil {
		return fmt.Errorf("cluster: restore: %w", err)
	}
	st, err := f.n.cfg.Open(path)
	if err != nil {
		f.setBroken(fmt.Errorf("cluster: restore: opening the restored store: %w", err))
		return f.broken
	}
	f.n.swap(st)
	f.n.restores.Add(1)
	f.applied = appliedIndex(st)
	f.n.appliedIdx.Store(f.applied)
	f.setBroken(nil)
	return nil
}

// wholeStore opens the store file at path read-only and checks that its
// valid entries reach its end.
func wholeStore(path string) error {
	st, err := simdr.Open(path, &simdr.Options{ReadOnly: true})
	if err != nil {
		return err
	}
	defer st.Close()
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if fi.Size() != st.Size() {
		return fmt.Errorf("%d of its %d bytes are valid entries: %w", st.Size(), fi.Size(), simdr.ErrCorrupt)
	}
	return nil
}
