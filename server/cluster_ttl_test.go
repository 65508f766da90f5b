package server_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/simdr-go/simdr/client"
	"github.com/simdr-go/simdr/cluster"
)

// expiresAt is key's expiry in n's store ("" when it has no value).
func expiresAt(n *cluster.Node, key string) string {
	st, release := n.Acquire()
	defer release()
	at, err := st.ExpiresAt([]byte(key))
	if err != nil {
		return ""
	}
	return fmt.Sprint(at.UnixMilli())
}

// Every replica gives a key written with a ttl the same expiry, to the
// millisecond, whenever it applies the write: the leader turns the ttl into
// an absolute time once. Writes go through a follower (forwarded) and the
// leader, single puts and a batch, and a rename carries the expiry along;
// a fourth node that joins later (and so applies every entry later, from
// the log or a snapshot) must get the same expiries too.
func TestClusterTTLSameOnEveryReplica(t *testing.T) {
	n1, n2, n3 := threeNodes(t)
	ctx := context.Background()
	viaFollower, _ := client.New(n2.url, &client.Options{Token: "tok"})
	viaLeader, _ := client.New(n1.url, &client.Options{Token: "tok"})
	if err := viaFollower.PutTTL(ctx, []byte("f"), []byte("v"), time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := viaLeader.PutTTL(ctx, []byte("l"), []byte("v"), 2*time.Hour); err != nil {
		t.Fatal(err)
	}
	var b client.Batch
	b.PutTTL([]byte("b1"), []byte("v"), 3*time.Hour)
	b.Put([]byte("plain"), []byte("v"))
	b.PutTTL([]byte("b2"), []byte("v"), 1500*time.Millisecond+time.Hour)
	if err := viaFollower.Apply(ctx, &b); err != nil {
		t.Fatal(err)
	}
	if err := viaFollower.PutTTL(ctx, []byte("from"), []byte("v"), 4*time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := viaFollower.Rename(ctx, []byte("from"), []byte("to")); err != nil {
		t.Fatal(err)
	}
	keys := []string{"f", "l", "b1", "b2", "to"}
	for _, n := range []*inNode{n2, n3} {
		waitFor(t, n.n.ID()+" to apply the rename", func() bool { return expiresAt(n.n, "to") != "" })
	}
	time.Sleep(50 * time.Millisecond) // a later apply would compute a later expiry
	n4 := startNode(t, "n4", n1.url)
	waitFor(t, "n4 to apply the rename", func() bool { return expiresAt(n4.n, "to") != "" })
	for _, k := range keys {
		want := expiresAt(n1.n, k)
		if want == "" {
			t.Fatalf("%s: no expiry on the leader", k)
		}
		for _, n := range []*inNode{n2, n3, n4} {
			if got := expiresAt(n.n, k); got != want {
				t.Errorf("%s: %s expires at %s, the leader at %s", n.n.ID(), k, got, want)
			}
		}
	}
	for _, n := range []*inNode{n1, n2, n3, n4} {
		st, release := n.n.Acquire()
		at, err := st.ExpiresAt([]byte("plain"))
		release()
		if err != nil || !at.IsZero() {
			t.Errorf("%s: plain expires at %v, %v", n.n.ID(), at, err)
		}
		if got := expiresAt(n.n, "from"); got != "" {
			t.Errorf("%s: the renamed key is still there (expiry %s)", n.n.ID(), got)
		}
	}
}
