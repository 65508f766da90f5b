package server

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"runtime"
	"strings"
	"testing"

	"github.com/simdr-go/simdr"
)

// allocBound is what a codec may allocate for a body of n bytes: a small
// multiple of what it was given, never what a record claims.
func allocBound(n int) uint64 { return 16*uint64(n) + 64<<10 }

// allocated returns the bytes fn allocates (runtime.MemStats.TotalAlloc).
func allocated(fn func()) uint64 {
	var a, b runtime.MemStats
	runtime.ReadMemStats(&a)
	fn()
	runtime.ReadMemStats(&b)
	return b.TotalAlloc - a.TotalAlloc
}

func binPut(b []byte, k, v string) []byte {
	b = append(b, 'P')
	b = binary.LittleEndian.AppendUint32(b, uint32(len(k)))
	b = append(b, k...)
	b = binary.LittleEndian.AppendUint64(b, uint64(len(v)))
	return append(b, v...)
}

func binKey(b []byte, k string) []byte {
	b = binary.LittleEndian.AppendUint32(b, uint32(len(k)))
	return append(b, k...)
}

var batchSeeds = []string{
	`{"ops":[{"op":"put","key":"a","value":"1"},{"op":"delete","key_b64":"AAE="}]}`,
	`{"ops":[{"op":"put","key":"\u00e9\ud83d\ude00","value_b64":"3q2+7w=="}]}`,
	`{"ops":[{"op":"put","key":"\ud800","value":"x"}]}`,
	"{\"ops\":[{\"op\":\"put\",\"key\":\"\xff\",\"value\":\"x\"}]}",
	`{"ops":null}`, `{}`, ` {"ops" : [ ] } `, `{"ops":[]} x`,
	string(binPut(nil, "k", "v")), "D\x01\x00\x00\x00k",
	"P\x01\x00\x00\x00k\xff\xff\xff\xff\xff\xff\xff\x7f", "P\xff\xff\xff\x7f",
}

// FuzzDecodeBatch: no input makes the batch codecs fail other than with an
// error, allocate more than a small multiple of the input, or disagree
// between the counting and the decoding pass.
func FuzzDecodeBatch(f *testing.F) {
	for _, s := range batchSeeds {
		f.Add([]byte(s), s[0] != '{' && s[0] != ' ')
	}
	f.Fuzz(func(t *testing.T, body []byte, bin bool) {
		var c cost
		var cerr, derr error
		var b *simdr.Batch
		n := allocated(func() {
			c, cerr = countBatch(body, bin)
			b, derr = decodeBatch(body, bin)
		})
		if n > allocBound(len(body)) {
			t.Fatalf("%d bytes of input allocated %d bytes", len(body), n)
		}
		if (cerr == nil) != (derr == nil) {
			t.Fatalf("count: %v, decode: %v", cerr, derr)
		}
		if derr == nil && b.Len() != c.items {
			t.Fatalf("count %d, decoded %d", c.items, b.Len())
		}
		if derr == nil && !bin && !json.Valid(body) {
			t.Fatalf("accepted invalid JSON %q", body)
		}
	})
}

// FuzzDecodeKeys: as FuzzDecodeBatch for get-many bodies; a JSON body the
// codec accepts decodes to the same keys with encoding/json.
func FuzzDecodeKeys(f *testing.F) {
	for _, s := range []string{`{"keys":["a","b\n\u00e9"]}`, `{"keys_b64":["YQ==",""]}`, `{"keys":["a"],"keys_b64":[]}`,
		`{"keys":["\udc00"]}`, `{"keys":[null]}`, `{"keys":[1]}`, string(binKey(binKey(nil, "a"), "")), "\xff\xff\xff\xff"} {
		f.Add([]byte(s), s[0] != '{')
	}
	f.Fuzz(func(t *testing.T, body []byte, bin bool) {
		var keys [][]byte
		var err error
		n := allocated(func() { keys, err = decodeKeys(body, bin) })
		if n > allocBound(len(body)) {
			t.Fatalf("%d bytes of input allocated %d bytes", len(body), n)
		}
		if err != nil || bin {
			return
		}
		var std struct {
			Keys    []string `json:"keys"`
			KeysB64 [][]byte `json:"keys_b64"`
		}
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&std); err != nil {
			t.Fatalf("accepted %q, which encoding/json refuses: %v", body, err)
		}
		want := std.KeysB64
		for _, k := range std.Keys {
			want = append(want, []byte(k))
		}
		if len(want) != len(keys) {
			t.Fatalf("%q: %d keys, encoding/json %d", body, len(keys), len(want))
		}
		for i := range keys {
			if !bytes.Equal(keys[i], want[i]) {
				t.Fatalf("%q: key %d is %q, encoding/json %q", body, i, keys[i], want[i])
			}
		}
	})
}

// Bodies that claim more than they hold allocate nothing for the claim.
func TestCodecClaims(t *testing.T) {
	for _, c := range []struct {
		name string
		body string
		bin  bool
		keys bool
	}{
		{"batch value", "P\x01\x00\x00\x00k\xff\xff\xff\x03\x00\x00\x00\x00", true, false},
		{"batch key", "P\xff\xff\xff\x03", true, false},
		{"get-many key", "\xff\xff\xff\x03", true, true},
	} {
		var err error
		n := allocated(func() {
			if c.keys {
				_, err = decodeKeys([]byte(c.body), c.bin)
			} else {
				_, err = decodeBatch([]byte(c.body), c.bin)
			}
		})
		if err == nil || n > 4096 {
			t.Errorf("%s: %v, %d bytes allocated", c.name, err, n)
		}
	}
}

// Invalid UTF-8 and lone surrogates are refused, pointing to the _b64
// fields; valid escapes (surrogate pairs included) decode as encoding/json
// does.
func TestCodecUTF8(t *testing.T) {
	for _, c := range []struct {
		body, want string // want: the error's hint, or the key decoded
	}{
		{"{\"keys\":[\"\xff\"]}", "keys_b64"},
		{`{"keys":["\ud800"]}`, "keys_b64"},
		{`{"keys":["\udc00x"]}`, "keys_b64"},
		{`{"keys":["\ud800\u0041"]}`, "keys_b64"},
		{`{"keys":["\ud83d\ude00\u00e9\n\"\\\/"]}`, "\U0001F600é\n\"\\/"},
		{"{\"keys\":[\"\xef\xbf\xbd\"]}", "\uFFFD"}, // a real U+FFFD is fine
	} {
		keys, err := decodeKeys([]byte(c.body), false)
		if strings.HasSuffix(c.want, "_b64") {
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("%q: %v, want an error naming %s", c.body, err, c.want)
			}
			continue
		}
		if err != nil || len(keys) != 1 || string(keys[0]) != c.want {
			t.Errorf("%q: %q %v, want %q", c.body, keys, err, c.want)
		}
	}
	for _, body := range []string{
		`{"ops":[{"op":"put","key":"\ud800","value":"v"}]}`,
		"{\"ops\":[{\"op\":\"put\",\"key\":\"k\",\"value\":\"\xff\"}]}",
	} {
		_, err := decodeBatch([]byte(body), false)
		if err == nil || !strings.Contains(err.Error(), "_b64") {
			t.Errorf("%q: %v", body, err)
		}
	}
	from, to, err := decodeRename([]byte(`{"from_b64":"/w==","to":"\ud800"}`))
	if err == nil || !strings.Contains(err.Error(), "to_b64") {
		t.Errorf("rename: %q %q %v", from, to, err)
	}
	if errors.Is(err, errNotUTF8) {
		t.Error("internal sentinel leaked")
	}
}
