package cluster

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// recorder relays one connection from a dialer to addr and keeps the first
// bytes each way: what an eavesdropper on the raft port captures.
type recorder struct {
	ln              net.Listener
	mu              sync.Mutex
	toAcc, toDialer bytes.Buffer
}

func newRecorder(t *testing.T, addr string) *recorder {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &recorder{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		in, err := ln.Accept()
		if err != nil {
			return
		}
		out, err := net.Dial("tcp", addr)
		if err != nil {
			in.Close()
			return
		}
		relay := func(dst, src net.Conn, keep *bytes.Buffer) {
			buf := make([]byte, 4096)
			for {
				n, err := src.Read(buf)
				if n > 0 {
					r.mu.Lock()
					keep.Write(buf[:n])
					r.mu.Unlock()
					dst.Write(buf[:n])
				}
				if err != nil {
					dst.Close()
					return
				}
			}
		}
		go relay(out, in, &r.toAcc)
		relay(in, out, &r.toDialer)
	}()
	return r
}

func (r *recorder) captured() (toAcc, toDialer []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return bytes.Clone(r.toAcc.Bytes()), bytes.Clone(r.toDialer.Bytes())
}

// A captured handshake is useless: replayed to the acceptor, the dialer's
// answer fails against a fresh nonce (the connection is dropped, never
// accepted, and no MAC comes back); replayed to a dialer, the acceptor's
// answer fails against the dialer's fresh nonce (ErrAuth).
func TestStreamLayerReplay(t *testing.T) {
	acc, err := newStreamLayer("127.0.0.1:0", "secret")
	if err != nil {
		t.Fatal(err)
	}
	defer acc.Close()
	dialer, err := newStreamLayer("127.0.0.1:0", "secret")
	if err != nil {
		t.Fatal(err)
	}
	defer dialer.Close()

	// The legitimate handshake, through the recorder.
	rec := newRecorder(t, acc.Addr().String())
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := acc.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	c, err := dialer.Dial(raft.ServerAddress(rec.ln.Addr().String()), 5*time.Second)
	if err != nil {
		t.Fatalf("the legitimate dial through the recorder: %v", err)
	}
	c.Write([]byte("ping"))
	s := <-accepted
	var ping [4]byte
	if _, err := io.ReadFull(s, ping[:]); err != nil || string(ping[:]) != "ping" {
		t.Fatalf("after the recorded handshake: %q %v", ping, err)
	}
	c.Close()
	s.Close()
	toAcc, toDialer := rec.captured()
	const dialerMsg, accHello, accMAC = 8 + 32 + 32, 8 + 32, 32
	if len(toAcc) < dialerMsg || len(toDialer) < accHello+accMAC {
		t.Fatalf("captured %d and %d bytes", len(toAcc), len(toDialer))
	}

	t.Run("dialer's answer replayed to the acceptor", func(t *testing.T) {
		raw, err := net.Dial("tcp", acc.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		raw.SetDeadline(time.Now().Add(2 * handshakeTimeout))
		hello := make([]byte, accHello)
		if _, err := io.ReadFull(raw, hello); err != nil {
			t.Fatal(err)
		}
		if bytes.Equal(hello, toDialer[:accHello]) {
			t.Fatal("the acceptor sent the same nonce twice")
		}
		raw.Write(toAcc[:dialerMsg])
		if n, err := io.ReadFull(raw, make([]byte, accMAC)); err == nil {
			t.Fatalf("the acceptor answered a replayed handshake with %d bytes", n)
		} else if ne := net.Error(nil); errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("the acceptor neither answered nor dropped the replay: %v", err)
		}
		// Dropped, not queued: the next connection accepted is a real one.
		c, err := dialer.Dial(rAddr(acc), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		got := <-accepted
		defer got.Close()
		if got.RemoteAddr().String() != c.LocalAddr().String() {
			t.Fatalf("the acceptor handed out %v, the replayed connection came from %v", got.RemoteAddr(), raw.LocalAddr())
		}
	})

	t.Run("acceptor's answer replayed to a dialer", func(t *testing.T) {
		fake, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer fake.Close()
		go func() {
			c, err := fake.Accept()
			if err != nil {
				return
			}
			defer c.Close()
			c.Write(toDialer[:accHello])
			io.ReadFull(c, make([]byte, dialerMsg))
			c.Write(toDialer[accHello : accHello+accMAC])
			io.Copy(io.Discard, c)
		}()
		c, err := dialer.Dial(raft.ServerAddress(fake.Addr().String()), 5*time.Second)
		if err == nil {
			c.Close()
			t.Fatal("the dialer took a replayed acceptor for a peer")
		}
		if !errors.Is(err, ErrAuth) {
			t.Fatalf("dial: %v, want ErrAuth", err)
		}
	})
}
