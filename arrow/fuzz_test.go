package simdrarrow

import "testing"

// FuzzReadAll: any bytes read as an IPC stream give records that pass
// validation, or an error; never a panic, a runaway allocation or a hang.
func FuzzReadAll(f *testing.F) {
	rec := testRecord(f, 0, 10)
	defer rec.Release()
	good, err := EncodeIPC(testSchema(), rec)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0x10, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		_, recs, err := readAll(b)
		if err != nil {
			return
		}
		for _, r := range recs {
			for _, c := range r.Columns() {
				_ = c.String() // every value is readable
			}
			r.Release()
		}
	})
}
