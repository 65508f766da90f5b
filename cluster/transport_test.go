package cluster

import (
	"errors"
	"github.com/hashicorp/raft"
	"io"
	"net"
	"testing"
	"time"
)

// The raft transport's handshake: peers with the same token talk; a peer
// without it can neither dial in nor be dialed.
func TestStreamLayerAuth(t *testing.T) {
	good, err := newStreamLayer("127.0.0.1:0", "secret")
	if err != nil {
		t.Fatal(err)
	}
	defer good.Close()
	bad, err := newStreamLayer("127.0.0.1:0", "other")
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	peer, _ := newStreamLayer("127.0.0.1:0", "secret")
	defer peer.Close()

	tests := []struct {
		name     string
		from, to *streamLayer
		ok       bool
	}{
		{"same token", peer, good, true},
		{"wrong token dials in", bad, good, false},
		{"dialing a node with another token", good, bad, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			accepted := make(chan net.Conn, 1)
			go func() {
				c, err := tc.to.Accept()
				if err == nil {
					accepted <- c
				}
			}()
			c, err := tc.from.Dial(rAddr(tc.to), time.Second)
			if tc.ok != (err == nil) {
				t.Fatalf("dial: %v, want ok=%v", err, tc.ok)
			}
			if !tc.ok {
				if !errors.Is(err, ErrAuth) && err != nil && !errors.Is(err, io.EOF) {
					t.Logf("refused: %v", err)
				}
				select {
				case <-accepted:
					t.Fatal("the acceptor handed out a connection from a peer without the token")
				case <-time.After(200 * time.Millisecond):
				}
				return
			}
			defer c.Close()
			s := <-accepted
			defer s.Close()
			c.Write([]byte("ping"))
			var b [4]byte
			if _, err := io.ReadFull(s, b[:]); err != nil || string(b[:]) != "ping" {
				t.Fatalf("after the handshake: %q %v", b, err)
			}
		})
	}
	// A raw client that sends garbage is dropped, never accepted.
	raw, err := net.Dial("tcp", good.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	raw.Write(make([]byte, 72))
	raw.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 100)
	n, _ := io.ReadAtLeast(raw, buf, 41)
	if n > 40 {
		t.Fatalf("a peer without the token got %d bytes back", n)
	}
	raw.Close()
}

func rAddr(s *streamLayer) raft.ServerAddress { return raft.ServerAddress(s.Addr().String()) }
