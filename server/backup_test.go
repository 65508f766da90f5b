package server_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/simdr-go/simdr"
	"github.com/simdr-go/simdr/server"
)

// getBackup fetches /v1/backup with query q; it returns the status, the
// body and the trailers.
func getBackup(t *testing.T, base, token, q string) (int, []byte, http.Header) {
	t.Helper()
	req, _ := http.NewRequest("GET", base+"/v1/backup"+q, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, b, res.Trailer
}

func TestBackupEndpoint(t *testing.T) {
	st := openStore(t)
	base, _ := start(t, st, server.Config{Token: "tok"})
	for i := range 100 {
		if err := st.Put(fmt.Appendf(nil, "k%d", i), bytes.Repeat([]byte{byte(i + 1)}, 1000)); err != nil {
			t.Fatal(err)
		}
	}
	if code, _, _ := getBackup(t, base, "", ""); code != http.StatusUnauthorized {
		t.Fatalf("no token: %d, want 401", code)
	}
	code, full, tr := getBackup(t, base, "tok", "")
	if code != 200 {
		t.Fatalf("full: %d %s", code, full)
	}
	gen, tail := tr.Get(server.HeaderBackupGeneration), tr.Get(server.HeaderBackupTail)
	if gen == "" || tail != fmt.Sprint(len(full)) {
		t.Fatalf("trailers %v for %d bytes", tr, len(full))
	}
	file, _ := os.ReadFile(st.Path())
	if !bytes.Equal(full, file[:len(full)]) || int64(len(full)) != st.Size() {
		t.Fatalf("full backup of %d bytes is not the store file of %d", len(full), st.Size())
	}
	for i := range 50 {
		if err := st.Put(fmt.Appendf(nil, "n%d", i), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	st.Delete([]byte("k3"))
	code, inc, tr2 := getBackup(t, base, "tok", "?generation="+gen+"&tail="+tail)
	if code != 200 {
		t.Fatalf("incremental: %d %s", code, inc)
	}
	code, full2, _ := getBackup(t, base, "tok", "")
	if code != 200 || !bytes.Equal(append(full, inc...), full2) {
		t.Fatalf("base (%d) + increment (%d) is not the full backup (%d)", len(full), len(inc), len(full2))
	}
	if tr2.Get(server.HeaderBackupTail) != fmt.Sprint(len(full2)) {
		t.Fatalf("increment tail %q, want %d", tr2.Get(server.HeaderBackupTail), len(full2))
	}
	// The backup opens as a store.
	p := filepath.Join(t.TempDir(), "b.simdr")
	os.WriteFile(p, full2, 0o644)
	b, err := simdr.Open(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	if b.Len() != st.Len() {
		t.Fatalf("backup holds %d keys, store %d", b.Len(), st.Len())
	}
	b.Close()

	tests := []struct {
		name, q string
		code    int
		errCode string
	}{
		{"tail without generation", "?tail=10", 400, "bad_request"},
		{"bad tail", "?generation=" + gen + "&tail=x", 400, "bad_request"},
		{"tail inside an entry", "?generation=" + gen + "&tail=7", 412, "bad_tail"},
		{"tail past the end", "?generation=" + gen + "&tail=99999999", 412, "bad_tail"},
		{"other generation", "?generation=zz&tail=" + tail, 409, "generation"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, body, _ := getBackup(t, base, "tok", tc.q)
			if code != tc.code || !bytes.Contains(body, []byte(`"code":"`+tc.errCode+`"`)) {
				t.Fatalf("%d %s, want %d %s", code, body, tc.code, tc.errCode)
			}
		})
	}
	// After a Compact the old generation is refused.
	if err := st.Compact(); err != nil {
		t.Fatal(err)
	}
	if code, body, _ := getBackup(t, base, "tok", "?generation="+gen+"&tail="+tail); code != http.StatusConflict {
		t.Fatalf("after compact: %d %s, want 409", code, body)
	}
}
