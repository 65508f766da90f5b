package server

import "testing"

// TestReadersDrain: a drain is done once every request that began before it
// has finished, whatever began after it; compact requests are not counted.
func TestReadersDrain(t *testing.T) {
	var rs readers
	isDone := func(c <-chan struct{}) bool {
		select {
		case <-c:
			return true
		default:
			return false
		}
	}
	if !isDone(rs.drain()) {
		t.Fatal("a drain with nothing in flight is not done")
	}
	a := rs.enter("/v1/keys/{key}")
	c := rs.enter("/v1/compact") // not counted
	d1 := rs.drain()
	b := rs.enter("/v1/get-many")
	d2 := rs.drain()
	if isDone(d1) || isDone(d2) {
		t.Fatal("done while the first request is in flight")
	}
	rs.leave(c)
	if isDone(d1) {
		t.Fatal("the compact request was counted")
	}
	rs.leave(a)
	if !isDone(d1) {
		t.Fatal("first drain not done once the request before it finished")
	}
	if isDone(d2) {
		t.Fatal("second drain done while a request before it is in flight")
	}
	e := rs.enter("/v1/len") // after both drains
	rs.leave(b)
	if !isDone(d2) {
		t.Fatal("second drain not done")
	}
	d3 := rs.drain()
	if isDone(d3) {
		t.Fatal("third drain done while a request before it is in flight")
	}
	rs.leave(e)
	if !isDone(d3) || len(rs.n) != 0 || len(rs.waiters) != 0 {
		t.Fatalf("third drain: done %v, %d periods, %d waiters left", isDone(d3), len(rs.n), len(rs.waiters))
	}
}
