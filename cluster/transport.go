package cluster

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// ErrAuth: a raft peer did not prove it holds the cluster token.
var ErrAuth = errors.New("cluster: raft peer failed the token handshake")

// handshakeTimeout bounds the token handshake of a raft connection.
const handshakeTimeout = 5 * time.Second

// magic opens every raft connection: the protocol and its version.
var magic = [8]byte{'s', 'i', 'm', 'd', 'r', 'R', 'F', '1'}

// streamLayer is a raft.StreamLayer over TCP whose connections both ends
// authenticate with an HMAC-SHA256 challenge-response keyed by the cluster
// token: the acceptor sends a random nonce, the dialer answers with its own
// nonce and the MAC of both, the acceptor answers with the MAC of both in
// the other order. Neither side sends the token, and a replayed answer is
// useless against a fresh nonce. The traffic after the handshake is neither
// encrypted nor integrity-protected (see docs/cluster.md).
type streamLayer struct {
	ln    net.Listener
	key   []byte
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

// newStreamLayer listens on addr (host:port) for raft peers holding token.
func newStreamLayer(addr, token string) (*streamLayer, error) {
	if token == "" {
		return nil, errors.New("cluster: a cluster needs a token (the raft transport is keyed by it)")
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("cluster: raft listen: %w", err)
	}
	k := sha256.Sum256([]byte("simdr raft transport\x00" + token))
	s := &streamLayer{ln: ln, key: k[:], conns: make(chan net.Conn), done: make(chan struct{})}
	go s.acceptLoop()
	return s, nil
}

func (s *streamLayer) acceptLoop() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			select {
			case <-s.done:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		go func() { // a slow or hostile peer holds up only itself
			if err := s.serverHandshake(c); err != nil {
				c.Close()
				return
			}
			select {
			case s.conns <- c:
			case <-s.done:
				c.Close()
			}
		}()
	}
}

func (s *streamLayer) mac(label string, a, b []byte) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(label))
	m.Write(a)
	m.Write(b)
	return m.Sum(nil)
}

func (s *streamLayer) serverHandshake(c net.Conn) error {
	c.SetDeadline(time.Now().Add(handshakeTimeout))
	defer c.SetDeadline(time.Time{})
	var ns [32]byte
	rand.Read(ns[:])
	if _, err := c.Write(append(magic[:], ns[:]...)); err != nil {
		return err
	}
	var in [8 + 32 + 32]byte // magic, client nonce, client MAC
	if _, err := io.ReadFull(c, in[:]); err != nil {
		return err
	}
	nc := in[8:40]
	if [8]byte(in[:8]) != magic || !hmac.Equal(in[40:], s.mac("dialer", ns[:], nc)) {
		return ErrAuth
	}
	_, err := c.Write(s.mac("acceptor", nc, ns[:]))
	return err
}

func (s *streamLayer) clientHandshake(c net.Conn) error {
	c.SetDeadline(time.Now().Add(handshakeTimeout))
	defer c.SetDeadline(time.Time{})
	var in [8 + 32]byte
	if _, err := io.ReadFull(c, in[:]); err != nil {
		return err
	}
	if [8]byte(in[:8]) != magic {
		return ErrAuth
	}
	ns := in[8:]
	var nc [32]byte
	rand.Read(nc[:])
	out := append(append(magic[:], nc[:]...), s.mac("dialer", ns, nc[:])...)
	if _, err := c.Write(out); err != nil {
		return err
	}
	var got [32]byte
	if _, err := io.ReadFull(c, got[:]); err != nil {
		return err
	}
	if !hmac.Equal(got[:], s.mac("acceptor", nc[:], ns)) {
		return ErrAuth
	}
	return nil
}

// Accept returns the next connection whose peer passed the handshake.
func (s *streamLayer) Accept() (net.Conn, error) {
	select {
	case c := <-s.conns:
		return c, nil
	case <-s.done:
		return nil, net.ErrClosed
	}
}

// Close stops listening; connections already handed out stay open.
func (s *streamLayer) Close() error {
	s.once.Do(func() { close(s.done) })
	return s.ln.Close()
}

// Addr is the address peers reach this node at.
func (s *streamLayer) Addr() net.Addr { return s.ln.Addr() }

// Dial connects to a peer and runs the handshake; a peer that does not hold
// the token fails with ErrAuth.
func (s *streamLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", string(addr), timeout)
	if err != nil {
		return nil, err
	}
	if err := s.clientHandshake(c); err != nil {
		c.Close()
		return nil, fmt.Errorf("cluster: dial %s: %w", addr, err)
	}
	return c, nil
}
