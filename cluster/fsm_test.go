package cluster

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/simdr-go/simdr"
)

func testNode(t *testing.T, path string) *Node {
	t.Helper()
	st, err := simdr.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	n := &Node{path: path, cur: &storeRef{st: st}, cfg: Config{Open: func(p string) (*simdr.Store, error) { return simdr.Open(p, nil) }}}
	n.fsm = &fsm{n: n, applied: appliedIndex(st)}
	return n
}

func put(k, v string) Op { return Op{Hash: simdr.Hash([]byte(k)), Value: []byte(v)} }

func get(t *testing.T, n *Node, k string) string {
	t.Helper()
	st, release := n.Acquire()
	defer release()
	e, err := st.Get([]byte(k))
	if errors.Is(err, simdr.ErrNotFound) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(e.Bytes())
}

func apply(n *Node, i uint64, cmd []byte) error {
	return n.fsm.Apply(&raft.Log{Index: i, Type: raft.LogCommand, Data: cmd}).(result).err
}

// Entries at or below the applied index kept in the store are skipped
// after a restart; the index is written with the entry's writes.
func TestFSMIdempotentAcrossRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.simdr")
	log := [][]byte{
		EncodeBatch([]Op{put("a", "1"), put("b", "2")}),
		EncodeRename([]byte("a"), []byte("c")),
		EncodeBatch([]Op{put("b", "3"), {Hash: simdr.Hash([]byte("c")), Del: true}}),
		EncodeRename([]byte("b"), []byte("d")),
	}
	n := testNode(t, path)
	for i, cmd := range log[:3] {
		if err := apply(n, uint64(i+1), cmd); err != nil {
			t.Fatalf("entry %d: %v", i+1, err)
		}
	}
	st, _ := n.Acquire()
	size := st.Size()
	st.Close()

	n = testNode(t, path) // restart: raft replays the whole log
	if n.fsm.applied != 3 {
		t.Fatalf("applied index after restart %d, want 3", n.fsm.applied)
	}
	for i, cmd := range log {
		// Re-applying entry 2 (a rename of a key gone since) would fail.
		if err := apply(n, uint64(i+1), cmd); err != nil {
			t.Fatalf("replayed entry %d: %v", i+1, err)
		}
		if st, release := n.Acquire(); i < 3 && st.Size() != size {
			t.Fatalf("replaying entry %d wrote to the store", i+1)
		} else {
			release()
		}
	}
	want := map[string]string{"a": "", "b": "", "c": "", "d": "3"}
	for k, v := range want {
		if got := get(t, n, k); got != v {
			t.Fatalf("%s = %q, want %q", k, got, v)
		}
	}
	if st, release := n.Acquire(); appliedIndex(st) != 4 {
		t.Fatalf("applied index %d, want 4", appliedIndex(st))
	} else {
		release()
	}
	n.cur.st.Close()
}

// A crash that kept an entry's writes but not its index (the index is the
// batch's last entry) applies the entry again, to the same state.
func TestFSMTornBatchReapplied(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.simdr")
	n := testNode(t, path)
	defer func() { n.cur.st.Close() }()
	if err := apply(n, 1, EncodeBatch([]Op{put("x", "0")})); err != nil {
		t.Fatal(err)
	}
	st, release := n.Acquire()
	st.Put([]byte("y"), []byte("moved")) // entry 2's writes, without the index
	st.Delete([]byte("x"))
	release()
	if err := apply(n, 2, EncodeRename([]byte("x"), []byte("y"))); !errors.Is(err, simdr.ErrNotFound) {
		t.Fatalf("rename again: %v", err) // answered to no one: the leader that took it crashed
	}
	if get(t, n, "y") != "moved" || get(t, n, "x") != "" || n.Applied() != 2 {
		t.Fatalf("after the replay: y=%q x=%q applied %d", get(t, n, "y"), get(t, n, "x"), n.Applied())
	}
}

func TestFSMCommands(t *testing.T) {
	n := testNode(t, filepath.Join(t.TempDir(), "s.simdr"))
	defer func() { n.cur.st.Close() }()
	tests := []struct {
		name string
		cmd  []byte
		want error
	}{
		{"reserved key", EncodeBatch([]Op{put("ok", "1"), {Hash: appliedHash, Value: []byte("x")}}), ErrReserved},
		{"rename missing", EncodeRename([]byte("nope"), []byte("z")), simdr.ErrNotFound},
		{"rename same", EncodeRename([]byte("k"), []byte("k")), simdr.ErrSameKey},
		{"invalid value", EncodeBatch([]Op{put("v", "")}), simdr.ErrInvalidValue},
		{"truncated", EncodeBatch([]Op{put("v", "abc")})[:12], errBadCommand},
		{"empty", nil, errBadCommand},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := apply(n, uint64(i+1), tc.cmd); !errors.Is(err, tc.want) {
				t.Fatalf("%v, want %v", err, tc.want)
			}
			if n.Applied() != uint64(i+1) || get(t, n, "ok") != "" || get(t, n, "v") != "" {
				t.Fatalf("a refused command wrote, or the index did not move: %d", n.Applied())
			}
		})
	}
}

type bufSink struct{ bytes.Buffer }

func (b *bufSink) ID() string    { return "test" }
func (b *bufSink) Cancel() error { return nil }
func (b *bufSink) Close() error  { return nil }

// A snapshot is a backup of the store; restoring it replaces the store
// file, the node serves the new store, and the old one stays readable by
// who holds it until released.
func TestFSMSnapshotRestore(t *testing.T) {
	src := testNode(t, filepath.Join(t.TempDir(), "a.simdr"))
	defer func() { src.cur.st.Close() }()
	for i := range 50 {
		apply(src, uint64(i+1), EncodeBatch([]Op{put(string(rune('a'+i%26)), string(rune('A'+i)))}))
	}
	snap, _ := src.fsm.Snapshot()
	var sink bufSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	snap.Release()

	dst := testNode(t, filepath.Join(t.TempDir(), "b.simdr"))
	apply(dst, 1, EncodeBatch([]Op{put("old", "1")}))
	old, release := dst.Acquire()
	if err := dst.fsm.Restore(io.NopCloser(&sink)); err != nil {
		t.Fatal(err)
	}
	if e, err := old.Get([]byte("old")); err != nil || string(e.Bytes()) != "1" {
		t.Fatalf("the old store, still held, reads %v", err)
	}
	release()
	if _, err := old.Get([]byte("old")); !errors.Is(err, simdr.ErrClosed) {
		t.Fatalf("the old store after its last release: %v, want ErrClosed", err)
	}
	if dst.Applied() != 50 || get(t, dst, "old") != "" || get(t, dst, "a") != get(t, src, "a") {
		t.Fatalf("restored: applied %d, old=%q", dst.Applied(), get(t, dst, "old"))
	}
	if err := apply(dst, 30, EncodeBatch([]Op{put("a", "stale")})); err != nil || get(t, dst, "a") == "stale" {
		t.Fatal("an entry the snapshot covers was applied again")
	}
	dst.cur.st.Close()
}

// A snapshot that is not a whole store (garbage, or cut short) is refused
// before it replaces anything: the node keeps its store and keeps applying.
func TestFSMRestoreRefusesBadSnapshot(t *testing.T) {
	src := testNode(t, filepath.Join(t.TempDir(), "a.simdr"))
	defer func() { src.cur.st.Close() }()
	for i := range 20 {
		apply(src, uint64(i+1), EncodeBatch([]Op{put(string(rune('a'+i)), "v")}))
	}
	snap, _ := src.fsm.Snapshot()
	var sink bufSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	good := sink.Bytes()
	for name, bad := range map[string][]byte{
		"garbage": bytes.Repeat([]byte{0x5a}, 300),
		"cut":     good[:len(good)-7],
	} {
		dst := testNode(t, filepath.Join(t.TempDir(), "b.simdr"))
		apply(dst, 1, EncodeBatch([]Op{put("old", "1")}))
		before, _ := os.ReadFile(dst.path)
		if err := dst.fsm.Restore(io.NopCloser(bytes.NewReader(bad))); err == nil {
			t.Fatalf("%s: Restore accepted it", name)
		}
		if after, _ := os.ReadFile(dst.path); !bytes.Equal(before, after) {
			t.Fatalf("%s: a refused snapshot changed the store file", name)
		}
		if err := apply(dst, 2, EncodeBatch([]Op{put("new", "2")})); err != nil || get(t, dst, "new") != "2" || get(t, dst, "old") != "1" {
			t.Fatalf("%s: the node no longer applies after a refused snapshot: %v", name, err)
		}
		dst.cur.st.Close()
	}
}

// A put with an expiry carries its absolute time: the replica stores that
// expiry whenever it applies the entry, and a rename keeps it.
func TestFSMExpiry(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.simdr")
	n := testNode(t, path)
	defer func() { n.cur.st.Close() }()
	at := time.Now().Add(time.Hour).Truncate(time.Millisecond)
	if err := apply(n, 1, EncodeBatch([]Op{{Hash: simdr.Hash([]byte("t")), Value: []byte("x"), ExpiresAt: at.UnixMilli()}, put("p", "y")})); err != nil {
		t.Fatal(err)
	}
	if err := apply(n, 2, EncodeRename([]byte("t"), []byte("t2"))); err != nil {
		t.Fatal(err)
	}
	st, release := n.Acquire()
	defer release()
	if got, err := st.ExpiresAt([]byte("t2")); err != nil || !got.Equal(at) {
		t.Fatalf("ExpiresAt(t2) = %v, %v; want %v", got, err, at)
	}
	if got, err := st.ExpiresAt([]byte("p")); err != nil || !got.IsZero() {
		t.Fatalf("ExpiresAt(p) = %v, %v; want none", got, err)
	}
	// Already past when applied (a replica far behind): stored expired.
	if err := apply(n, 3, EncodeBatch([]Op{{Hash: simdr.Hash([]byte("old")), Value: []byte("x"), ExpiresAt: 1}})); err != nil {
		t.Fatal(err)
	}
	if st.Has([]byte("old")) {
		t.Fatal("a put that expired before it was applied is visible")
	}
	for i, bad := range [][]byte{
		EncodeBatch([]Op{{Hash: 1, Value: []byte("x"), ExpiresAt: 5}})[:5+1+8+4],                     // cut in its expiry
		{cmdBatch, 1, 0, 0, 0, 'T', 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 'x'}, // expiry 0
		{cmdBatch, 1, 0, 0, 0, 'Q', 1, 0, 0, 0, 0, 0, 0, 0},                                          // unknown op
	} {
		if err := apply(n, uint64(4+i), bad); !errors.Is(err, errBadCommand) {
			t.Errorf("malformed %x: %v, want errBadCommand", bad, err)
		}
	}
}
