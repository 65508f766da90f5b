package server

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/simdr-go/simdr"
	"github.com/simdr-go/simdr/internal/ttlms"
)

// allocBound is what a codec may allocate for a body of n bytes: a small
// multiple of what it was given, never what a record claims.
func allocBound(n int) uint64 { return 16*uint64(n) + 64<<10 }

// allocated returns the bytes fn allocates (runtime.MemStats.TotalAlloc),
// the least of three runs: TotalAlloc counts every goroutine's, and those a
// test before left winding down (a cluster node's) add to one run, not all.
func allocated(fn func()) uint64 {
	least := uint64(math.MaxUint64)
	for range 3 {
		var a, b runtime.MemStats
		runtime.ReadMemStats(&a)
		fn()
		runtime.ReadMemStats(&b)
		least = min(least, b.TotalAlloc-a.TotalAlloc)
	}
	return least
}

func binPut(b []byte, k, v string) []byte {
	b = append(b, 'P')
	b = binary.LittleEndian.AppendUint32(b, uint32(len(k)))
	b = append(b, k...)
	b = binary.LittleEndian.AppendUint64(b, uint64(len(v)))
	return append(b, v...)
}

// binPutTTL is a 'T' record: a put with a ttl of ms milliseconds.
func binPutTTL(b []byte, k, v string, ms uint64) []byte {
	b = binPut(b, k, v)
	b[len(b)-len(v)-8-len(k)-4-1] = 'T'
	return binary.LittleEndian.AppendUint64(b, ms)
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
	`{"ops":[{"op":"put","key":"a","value":"1","ttl_ms":60000},{"op":"put","key":"b","value":"2","ttl_ms":null}]}`,
	`{"ops":[{"ttl_ms": 9223372036854775807, "op":"put","key":"a","value_b64":"AA=="}]}`,
	`{"ops":[{"op":"put","key":"a","value":"1","ttl_ms":0}]}`,
	`{"ops":[{"op":"put","key":"a","value":"1","ttl_ms":-1}]}`,
	`{"ops":[{"op":"put","key":"a","value":"1","ttl_ms":1.5e3}]}`,
	`{"ops":[{"op":"put","key":"a","value":"1","ttl_ms":"5"}]}`,
	`{"ops":[{"op":"put","key":"a","value":"1","ttl_ms":9223372036854775808}]}`,
	`{"ops":[{"op":"delete","key":"a","ttl_ms":5}]}`,
	`{"ops":[{"op":"put","key":5,"value":"1"}]}`,
	string(binPutTTL(binPut(nil, "k", "v"), "t", "w", 1000)),
	string(binPutTTL(nil, "t", "w", 0)), string(binPutTTL(nil, "t", "w", 1<<63)),
	string(binPutTTL(nil, "t", "w", 5)[:12]),
}

// recorder is a batchSink that keeps every op, for comparisons.
type recorder struct{ ops []recOp }

type recOp struct {
	put        bool
	key, value []byte
	ttl        time.Duration
}

func (r *recorder) Put(key, value []byte) {
	r.ops = append(r.ops, recOp{true, bytes.Clone(key), bytes.Clone(value), 0})
}
func (r *recorder) PutTTL(key, value []byte, ttl time.Duration) {
	r.ops = append(r.ops, recOp{true, bytes.Clone(key), bytes.Clone(value), ttl})
}
func (r *recorder) Delete(key []byte) { r.ops = append(r.ops, recOp{false, bytes.Clone(key), nil, 0}) }

// stdBatch decodes a JSON batch body with encoding/json, as the codec
// should have.
func stdBatch(body []byte) ([]recOp, error) {
	var std struct {
		Ops []struct {
			Op       string       `json:"op"`
			Key      *string      `json:"key"`
			KeyB64   []byte       `json:"key_b64"`
			Value    *string      `json:"value"`
			ValueB64 []byte       `json:"value_b64"`
			TTLms    *json.Number `json:"ttl_ms"`
		} `json:"ops"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	if err := dec.Decode(&std); err != nil {
		return nil, err
	}
	var out []recOp
	for _, o := range std.Ops {
		op := recOp{put: o.Op == "put", key: o.KeyB64, value: o.ValueB64}
		if o.Key != nil {
			op.key = []byte(*o.Key)
		}
		if o.Value != nil {
			op.value = []byte(*o.Value)
		}
		if o.TTLms != nil {
			ms, err := strconv.ParseInt(string(*o.TTLms), 10, 64)
			if err != nil {
				return nil, err
			}
			op.ttl = ttlms.Duration(ms)
		}
		out = append(out, op)
	}
	return out, nil
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
		if derr != nil {
			return
		}
		var rec recorder
		if err := walkBatch(body, bin, &rec); err != nil || len(rec.ops) != c.items {
			t.Fatalf("walkBatch: %d ops, %v; decoded %d", len(rec.ops), err, c.items)
		}
		for i, op := range rec.ops {
			if op.ttl < 0 || (op.ttl > 0 && !op.put) {
				t.Fatalf("op %d: ttl %v on a put %v", i, op.ttl, op.put)
			}
		}
		if bin {
			return
		}
		std, err := stdBatch(body)
		if err != nil {
			t.Fatalf("accepted %q, which encoding/json refuses: %v", body, err)
		}
		if len(std) != len(rec.ops) {
			t.Fatalf("%q: %d ops, encoding/json %d", body, len(rec.ops), len(std))
		}
		for i, op := range rec.ops {
			w := std[i]
			if op.put != w.put || !bytes.Equal(op.key, w.key) || !bytes.Equal(op.value, w.value) || op.ttl != w.ttl {
				t.Fatalf("%q: op %d is %+v, encoding/json %+v", body, i, op, w)
			}
		}
	})
}

// ttl_ms and the binary 'T' record: a positive integer of milliseconds,
// written with digits only; anything else is ErrInvalidTTL, from the
// counting pass already.
func TestCodecTTL(t *testing.T) {
	op := func(ttl string) string {
		return `{"ops":[{"op":"put","key":"k","value":"v","ttl_ms":` + ttl + `}]}`
	}
	for _, c := range []struct {
		body string
		bin  bool
		want time.Duration // -1: ErrInvalidTTL; -2: another error
	}{
		{op("1"), false, time.Millisecond},
		{op("600000"), false, 10 * time.Minute},
		{op(" 42 "), false, 42 * time.Millisecond},
		{op("null"), false, 0},
		{op("9223372036854775807"), false, math.MaxInt64},
		{op("9223372036854"), false, math.MaxInt64 / time.Millisecond * time.Millisecond},
		{op("9223372036855"), false, math.MaxInt64},
		{op("0"), false, -1},
		{op("-1"), false, -1},
		{op("-0"), false, -1},
		{op("1.5"), false, -1},
		{op("1.0"), false, -1},
		{op("1e3"), false, -1},
		{op("1E+3"), false, -1},
		{op(`"1000"`), false, -1},
		{op("9223372036854775808"), false, -1},
		{op("99999999999999999999999"), false, -1},
		{op("01"), false, -2},
		{op("1."), false, -2},
		{op("+1"), false, -2},
		{op("- 1"), false, -2},
		{op("true"), false, -2},
		{`{"ops":[{"op":"delete","key":"k","ttl_ms":5}]}`, false, -2},
		{string(binPutTTL(nil, "k", "v", 1)), true, time.Millisecond},
		{string(binPutTTL(nil, "k", "v", 1<<63-1)), true, math.MaxInt64},
		{string(binPutTTL(nil, "k", "v", 0)), true, -1},
		{string(binPutTTL(nil, "k", "v", 1<<63)), true, -1},
		{string(binPutTTL(nil, "k", "v", 1<<64-1)), true, -1},
		{string(binPutTTL(nil, "k", "v", 1))[:14], true, -2},
	} {
		_, cerr := countBatch([]byte(c.body), c.bin)
		var rec recorder
		err := walkBatch([]byte(c.body), c.bin, &rec)
		switch {
		case (cerr == nil) != (err == nil):
			t.Errorf("%q: count %v, decode %v", c.body, cerr, err)
		case c.want == -1:
			if !errors.Is(err, simdr.ErrInvalidTTL) {
				t.Errorf("%q: %v, want ErrInvalidTTL", c.body, err)
			}
		case c.want == -2:
			if err == nil || errors.Is(err, simdr.ErrInvalidTTL) {
				t.Errorf("%q: %v, want an error other than ErrInvalidTTL", c.body, err)
			}
		case err != nil:
			t.Errorf("%q: %v", c.body, err)
		case len(rec.ops) != 1 || rec.ops[0].ttl != c.want || string(rec.ops[0].key) != "k" || string(rec.ops[0].value) != "v":
			t.Errorf("%q: %+v, want ttl %v", c.body, rec.ops, c.want)
		}
	}
	// A decoded batch applies the ttl.
	b, err := decodeBatch([]byte(op("60000")), false)
	if err != nil {
		t.Fatal(err)
	}
	st, err := simdr.Open(t.TempDir()+"/s.simdr", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Apply(b); err != nil {
		t.Fatal(err)
	}
	if d, err := st.TTL([]byte("k")); err != nil || d <= 0 || d > time.Minute {
		t.Errorf("TTL after applying a decoded ttl_ms: %v, %v", d, err)
	}
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
