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

// head decodes the entry that would end a chain at tail, with the cheap checks
// that make a torn or garbage tail fail: a sound structure, and metadata that
// is not all zero bytes (a file grown without its data). Its checksum (which
// also fails a torn all-zero payload) is left to the caller.
func head(data []byte, floor, tail int64) (Entry, bool) {
	e, ok := Decode(data, tail)
	if !ok || e.Prev < floor || allZero(data[e.End:tail]) {
		return Entry{}, false
	}
	return e, true
}

// step checks one link of a chain: the entry ending at t decodes, begins at or
// after floor, and where it is cheap to tell, its checksum holds (tombstones,
// and the first entry of the file, whose metadata a lost write can zero).
func step(data []byte, floor, t int64, m *memo) (Entry, bool) {
	e, ok := Decode(data, t)
	if !ok || e.Prev < floor {
		return Entry{}, false
	}
	switch {
	case e.Tombstone:
		ok = e.Valid(data)
	case e.Prev == 0 && m != nil:
		// Garbage can hold many "first entries" (prev 0): all start at 0.
		ok = m.sums.checksum(data, e.Start, e.End) == e.CRC
	case e.Prev == 0:
		ok = e.Valid(data)
	}
	if !ok {
		return Entry{}, false
	}
	return e, true
}

// Chain reports whether a valid chain ends at tail and steps strictly down to
// exactly floor. The entry ending at tail must also pass its checksum.
func Chain(data []byte, floor, tail int64) bool {
	return chain(data, floor, tail, nil)
}

// WalkChain is Chain calling fn for every entry of the chain as it checks it,
// newest first: one pass where Chain and then Walk take two. When it returns
// false, fn may have been called for entries of a chain that is not valid.
func WalkChain(data []byte, floor, tail int64, fn func(Entry)) bool {
	return chain(data, floor, tail, fn)
}

// chain is Chain calling visit (when not nil) for every entry. The chain
// beneath the head is walked before the head's checksum is computed: most
// garbage fails the walk at once, while the checksum of a candidate can cover
// the whole file. FindTail makes the same checks with what it remembers
// (see memo.try).
func chain(data []byte, floor, tail int64, visit func(Entry)) bool {
	if tail == floor {
		return true
	}
	first, ok := head(data, floor, tail)
	if !ok {
		return false
	}
	if visit != nil {
		visit(first)
	}
	t := first.Prev
	for t > floor {
		e, ok := step(data, floor, t, nil)
		if !ok {
			return false
		}
		if visit != nil {
			visit(e)
		}
		t = e.Prev
	}
	if t != floor {
		return false
	}
	if first.Tombstone {
		return first.Valid(data)
	}
	return Checksum(data[first.Start:first.End]) == first.CRC
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
