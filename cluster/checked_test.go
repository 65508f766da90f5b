package cluster

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/simdr-go/simdr"
)

// openInProcess opens node id of an in-process cluster (its own store and
// raft directory in dir), bootstrapping it alone when boot is set.
func openInProcess(t *testing.T, dir, id string, boot bool) *Node {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	st, err := simdr.Open(filepath.Join(dir, id+".simdr"), nil)
	if err != nil {
		t.Fatal(err)
	}
	n, err := Open(Config{ID: id, RaftAddr: addr, Dir: filepath.Join(dir, id+"-raft"), Token: "tok", Bootstrap: boot,
		HeartbeatTimeout: 300 * time.Millisecond, ElectionTimeout: 300 * time.Millisecond, LogOutput: io.Discard}, st)
	if err != nil {
		st.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// waitUntil polls cond, failing the test after a minute.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// threeInProcess starts three nodes in process, n1 leading, and writes
// k = v1; it returns n1 and n2.
func threeInProcess(t *testing.T) (n1, n2 *Node) {
	t.Helper()
	dir := t.TempDir()
	n1 = openInProcess(t, dir, "n1", true)
	waitUntil(t, "n1 to lead", n1.IsLeader)
	n2 = openInProcess(t, dir, "n2", false)
	n3 := openInProcess(t, dir, "n3", false)
	ctx := context.Background()
	for _, n := range []*Node{n2, n3} {
		if err := n1.Join(ctx, n.cfg.ID, string(n.trans.LocalAddr()), "http://"+n.cfg.ID, false); err != nil {
			t.Fatal(err)
		}
	}
	if err := n1.Apply(ctx, EncodeBatch([]Op{put("k", "v1")})); err != nil {
		t.Fatal(err)
	}
	return n1, n2
}

// transfer hands from's leadership to to and waits until to leads.
func transfer(t *testing.T, from, to *Node) {
	t.Helper()
	if err := from.raft.LeadershipTransferToServer(raft.ServerID(to.cfg.ID), to.trans.LocalAddr()).Error(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, to.cfg.ID+" to lead", to.IsLeader)
}

// A checked write decided in one term of its leader is not applied in a
// later term of the same leader when another leader wrote in between: the
// node lost its leadership during the check, another node led and wrote,
// and the first led again before the check returned. The command decided
// from the store before that write (delete k, its value was the one
// If-Match named) deleted the newer value, which no order of the two
// writes explains.
func TestApplyCheckedAcrossTerms(t *testing.T) {
	n1, n2 := threeInProcess(t)
	ctx := context.Background()
	errMismatch := errors.New("k no longer holds v1")
	inCheck, proceed := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	checks := 0
	go func() {
		done <- n1.ApplyChecked(ctx, func(st *simdr.Store) ([]byte, error) {
			checks++
			e, err := st.Get([]byte("k"))
			match := err == nil && bytes.Equal(e.Bytes(), []byte("v1"))
			if checks == 1 {
				close(inCheck) // decided; slow to return (a large value copied, the process paused)
				<-proceed
			}
			if !match {
				return nil, errMismatch // a DELETE with If-Match naming v1: 412
			}
			return EncodeBatch([]Op{{Hash: simdr.Hash([]byte("k")), Del: true}}), nil
		})
	}()
	<-inCheck
	// The check has decided from k = v1. Another leader writes v2, then n1
	// leads again.
	transfer(t, n1, n2)
	if err := n2.Apply(ctx, EncodeBatch([]Op{put("k", "v2")})); err != nil {
		t.Fatal(err)
	}
	transfer(t, n2, n1)
	// The check now decides from the state it saw in n1's first term.
	close(proceed)
	err := <-done
	if err != nil && !errors.Is(err, errMismatch) && !errors.Is(err, ErrNotLeader) {
		t.Fatalf("ApplyChecked: %v", err)
	}
	if err := n1.VerifyRead(ctx); err != nil {
		t.Fatal(err)
	}
	if got := get(t, n1, "k"); got != "v2" {
		t.Fatalf("k = %q after a put of v2 and a delete decided from v1 (ApplyChecked: %v), want v2", got, err)
	}
}

// A checked command applies its command only right after the entry its
// check saw last, the same way on every replica; otherwise, or malformed,
// it writes nothing but the applied index.
func TestFSMCheckedCommand(t *testing.T) {
	del := EncodeBatch([]Op{{Hash: simdr.Hash([]byte("k")), Del: true}})
	for _, tc := range []struct {
		name string
		cmd  []byte
		want error
		k    string
	}{
		{"follows", encodeChecked(1, del), nil, ""},
		{"another entry between", encodeChecked(0, del), errChanged, "v"},
		{"later than applied", encodeChecked(2, del), errChanged, "v"},
		{"short", []byte{cmdChecked, 1, 0, 0}, errBadCommand, "v"},
		{"no command", encodeChecked(1, nil), errBadCommand, "v"},
		{"nested", encodeChecked(1, encodeChecked(1, del)), errBadCommand, "v"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := testNode(t, filepath.Join(t.TempDir(), "s.simdr"))
			defer func() { n.cur.st.Close() }()
			if err := apply(n, 1, EncodeBatch([]Op{put("k", "v")})); err != nil {
				t.Fatal(err)
			}
			if err := apply(n, 2, tc.cmd); !errors.Is(err, tc.want) {
				t.Fatalf("apply: %v, want %v", err, tc.want)
			}
			if got := get(t, n, "k"); got != tc.k {
				t.Errorf("k = %q, want %q", got, tc.k)
			}
			st, release := n.Acquire()
			defer release()
			if got := appliedIndex(st); got != 2 {
				t.Errorf("applied index %d, want 2", got)
			}
		})
	}
}

// A strong read's check does not take a leadership won back after another
// leader wrote for the term whose barrier it applied: the node's store may
// not hold that leader's writes yet (held here with Exclusive).
func TestVerifyReadAcrossTerms(t *testing.T) {
	n1, n2 := threeInProcess(t)
	ctx := context.Background()
	if err := n1.VerifyRead(ctx); err != nil { // the term's barrier
		t.Fatal(err)
	}
	held, unhold := make(chan struct{}), make(chan struct{})
	defer close(unhold)
	testHookVerifyRead = func() {
		testHookVerifyRead = nil
		transfer(t, n1, n2)
		go n1.Exclusive(func() { close(held); <-unhold }) // n1 applies nothing more
		<-held
		if err := n2.Apply(ctx, EncodeBatch([]Op{put("k", "v2")})); err != nil {
			t.Error(err)
		}
		transfer(t, n2, n1)
	}
	defer func() { testHookVerifyRead = nil }()
	err := n1.VerifyRead(ctx)
	if got := get(t, n1, "k"); err == nil && got != "v2" {
		t.Fatalf("VerifyRead passed on a store holding k = %q, after v2 was acknowledged", got)
	}
	if err != nil && !errors.Is(err, ErrNotLeader) {
		t.Fatal(err)
	}
}
