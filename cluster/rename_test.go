package cluster

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/simdr-go/simdr"
)

// RenameCommand decides a rename on the leader's store and makes it a blind
// batch: a replica applies it the same way however late, a value whose
// expiry has passed by then included (it replaces the destination there
// too, and is expired there too), where the rename command, decided again by
// each replica, found nothing to move and kept the destination's old value.
func TestRenameCommand(t *testing.T) {
	leader := testNode(t, filepath.Join(t.TempDir(), "l.simdr"))
	defer func() { leader.cur.st.Close() }()
	soon := time.Now().Add(300 * time.Millisecond).UnixMilli()
	if err := apply(leader, 1, EncodeBatch([]Op{put("plain", "p"), {Hash: simdr.Hash([]byte("ttl")), Value: []byte("t"), ExpiresAt: soon}})); err != nil {
		t.Fatal(err)
	}
	st, release := leader.Acquire()
	defer release()
	for _, tc := range []struct {
		name, from, to string
		want           error
	}{
		{"missing", "nope", "x", simdr.ErrNotFound},
		{"same key", "plain", "plain", simdr.ErrSameKey},
		{"reserved", string(MembersKey), "x", ErrReserved},
	} {
		if _, err := RenameCommand(st, []byte(tc.from), []byte(tc.to)); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	plain, err := RenameCommand(st, []byte("plain"), []byte("p2"))
	if err != nil {
		t.Fatal(err)
	}
	expiring, err := RenameCommand(st, []byte("ttl"), []byte("dst"))
	if err != nil {
		t.Fatal(err)
	}
	// A replica whose dst holds an older value applies both after the
	// expiry has passed.
	late := testNode(t, filepath.Join(t.TempDir(), "r.simdr"))
	defer func() { late.cur.st.Close() }()
	if err := apply(late, 1, EncodeBatch([]Op{put("plain", "p"), {Hash: simdr.Hash([]byte("ttl")), Value: []byte("t"), ExpiresAt: soon}, put("dst", "old")})); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(time.UnixMilli(soon)) + 10*time.Millisecond) // past the expiry: what a late replica sees
	for i, cmd := range [][]byte{plain, expiring} {
		if err := apply(late, uint64(2+i), cmd); err != nil {
			t.Fatal(err)
		}
	}
	for k, want := range map[string]string{"plain": "", "p2": "p", "ttl": "", "dst": ""} {
		if got := get(t, late, k); got != want {
			t.Errorf("late replica: %s = %q, want %q", k, got, want)
		}
	}
	lst, lrelease := late.Acquire()
	defer lrelease()
	if at, err := lst.ExpiresAt([]byte("p2")); err != nil || !at.IsZero() {
		t.Errorf("p2 expires at %v (%v), want never", at, err)
	}
}
