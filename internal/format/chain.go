package format

// The chain: every entry's Prev is where it begins, the end of the entry before
// it. Walking the Prev links back from a tail visits every entry, newest first.

// allZero reports whether b holds only zero bytes.
func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// head decodes the entry that would end a chain at tail, with the checks that
// make a torn or garbage tail fail: a sound structure, metadata that is not all
// zero bytes (a file grown without its data, or a torn all-zero payload), and a
// checksum that matches.
func head(data []byte, floor, tail int64) (Entry, bool) {
	e, ok := Decode(data, tail)
	if !ok || e.Prev < floor || allZero(data[e.End:tail]) || !e.Valid(data) {
		return Entry{}, false
	}
	return e, true
}

// step checks one link of a chain: the entry ending at t decodes, begins at or
// after floor, and where it is cheap to tell, its checksum holds (tombstones,
// and the first entry of the file, whose metadata a lost write can zero).
func step(data []byte, floor, t int64) (Entry, bool) {
	e, ok := Decode(data, t)
	if !ok || e.Prev < floor {
		return Entry{}, false
	}
	if (e.Tombstone || e.Prev == 0) && !e.Valid(data) {
		return Entry{}, false
	}
	return e, true
}

// Chain reports whether a valid chain ends at tail and steps strictly down to
// exactly floor. The entry ending at tail must also pass its checksum.
func Chain(data []byte, floor, tail int64) bool {
	return chain(data, floor, tail, nil)
}

// chain is Chain with a set of offsets already known not to lead to floor;
// on failure it adds the offsets it walked through to bad (when bad is not nil).
func chain(data []byte, floor, tail int64, bad map[int64]struct{}) bool {
	if tail == floor {
		return true
	}
	first, ok := head(data, floor, tail)
	if !ok {
		return false
	}
	t := first.Prev
	for t > floor {
		if _, known := bad[t]; known {
			break
		}
		e, ok := step(data, floor, t)
		if !ok {
			break
		}
		t = e.Prev
	}
	if t == floor {
		return true
	}
	if bad != nil {
		// Every offset from first.Prev down to the failure leads to it.
		for u := first.Prev; u > t; {
			bad[u] = struct{}{}
			e, _ := Decode(data, u)
			u = e.Prev
		}
		bad[t] = struct{}{}
	}
	return false
}

// FindTail returns the largest L in [floor, len(data)] at which a valid chain
// ends and steps down to exactly floor (see Chain), walking back from the end of
// data. found is false when data extends past floor but no such L above floor
// exists; L is then floor. The work is linear in len(data)-floor plus the
// checksums of the candidate heads.
func FindTail(data []byte, floor int64) (L int64, found bool) {
	n := int64(len(data))
	if n <= floor {
		return floor, n == floor
	}
	bad := make(map[int64]struct{})
	for L = n; L > floor; L-- {
		if chain(data, floor, L, bad) {
			return L, true
		}
	}
	return floor, false
}

// Walk visits every entry of the chain that ends at tail, newest first, down to
// floor. The chain must be valid (see Chain); Walk stops early when fn returns false
// or a link does not decode.
func Walk(data []byte, floor, tail int64, fn func(Entry) bool) {
	for t := tail; t > floor; {
		e, ok := Decode(data, t)
		if !ok || !fn(e) {
			return
		}
		t = e.Prev
	}
}
