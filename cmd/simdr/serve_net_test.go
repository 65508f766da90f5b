package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/simdr-go/simdr/client"
)

// serveAddr starts "simdr FILE serve --addr 127.0.0.1:0 ..." and returns
// the URL it printed, once it printed it; the server is stopped (SIGTERM)
// at the end of the test.
func serveAddr(t *testing.T, args ...string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "s.simdr")
	cmd := exec.Command(bin, append([]string{f, "serve", "--addr", "127.0.0.1:0"}, args...)...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	})
	br := bufio.NewReader(stderr)
	line, err := br.ReadString('\n')
	go io.Copy(io.Discard, br)
	u := urlRE.FindString(line)
	if err != nil || u == "" {
		t.Fatalf("serve: first line %q, %v", line, err)
	}
	return u
}

// The address printed is the real one, and printed once listening: the
// first request made with it succeeds, no retry.
func TestServePrintsRealAddress(t *testing.T) {
	u := serveAddr(t)
	if strings.HasSuffix(u, ":0") || !strings.HasPrefix(u, "http://127.0.0.1:") {
		t.Fatalf("printed %q", u)
	}
	r, err := http.Get(u + "/healthz")
	if err != nil {
		t.Fatalf("first request to the printed address: %v", err)
	}
	r.Body.Close()
	if r.StatusCode != 200 {
		t.Fatalf("healthz: %s", r.Status)
	}
	// Web pages are refused by the real process too; malformed requests get JSON.
	req, _ := http.NewRequest("PUT", u+"/v1/keys/k", strings.NewReader("v"))
	req.Header.Set("Origin", "https://evil.example")
	if r, err := http.DefaultClient.Do(req); err != nil || r.StatusCode != 403 {
		t.Fatalf("cross-origin PUT: %v %v", r, err)
	}
	conn, err := net.Dial("tcp", strings.TrimPrefix(u, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "GET /v1/keys/%zz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
	b, _ := io.ReadAll(conn)
	if !strings.HasPrefix(string(b), "HTTP/1.1 400") || !strings.Contains(string(b), "application/json") || !strings.Contains(string(b), `"code":"bad_request"`) {
		t.Fatalf("malformed escape: %q", b)
	}
}

// writeCert writes a self-signed certificate for 127.0.0.1 and its key,
// and returns their paths and a pool holding the certificate.
func writeCert(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "simdr test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// HTTPS with --tls-cert/--tls-key: HTTP/2 over TLS, and the client with a
// custom CA.
func TestServeTLS(t *testing.T) {
	certFile, keyFile, pool := writeCert(t)
	u := serveAddr(t, "--tls-cert", certFile, "--tls-key", keyFile)
	if !strings.HasPrefix(u, "https://127.0.0.1:") {
		t.Fatalf("printed %q", u)
	}
	c, err := client.New(u, &client.Options{RootCAs: pool})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseIdleConnections()
	ctx := context.Background()
	if err := c.Put(ctx, []byte("k"), []byte("over TLS")); err != nil {
		t.Fatal(err)
	}
	if v, err := c.Get(ctx, []byte("k")); err != nil || string(v) != "over TLS" {
		t.Fatalf("Get: %q %v", v, err)
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}}
	r, err := hc.Get(u + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.ProtoMajor != 2 {
		t.Fatalf("HTTPS served %s, want HTTP/2", r.Proto)
	}
	// Without the CA, the certificate is refused.
	bad, _ := client.New(u, nil)
	var ue x509.UnknownAuthorityError
	if err := bad.Ping(ctx); !errors.As(err, &ue) {
		t.Fatalf("unknown CA: %v", err)
	}
	// Plain HTTP to the TLS port does not serve.
	if r, err := http.Get("http://" + strings.TrimPrefix(u, "https://") + "/healthz"); err == nil && r.StatusCode == 200 {
		t.Fatal("plain HTTP answered on the TLS port")
	}
}

func TestServeTLSFlags(t *testing.T) {
	f := filepath.Join(t.TempDir(), "s.simdr")
	fails(t, 2, f, "serve", "--tls-cert", "x.pem")
	r := fails(t, 1, f, "serve", "--tls-cert", "missing.pem", "--tls-key", "missing.key")
	if !strings.Contains(string(r.stderr), "TLS") {
		t.Errorf("missing cert: %v", r)
	}
	fails(t, 2, f, "serve", "--max-inflight-bytes", "0")
}

var urlRE = regexp.MustCompile(`https?://[^ ]+`)
