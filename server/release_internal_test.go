package server

import (
	"sync"
	"testing"
)

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
	if !isDone(d3) || rs.cur.Load().prev != nil {
		t.Fatalf("third drain: done %v, an earlier period still linked: %v", isDone(d3), rs.cur.Load().prev != nil)
	}
}

// TestReadersDrainConcurrent: requests enter and leave from many goroutines
// while drains begin; a drain is never done while a request that entered
// before it is in flight, and every drain is done once those have left
// (run with -race: no lock on the request path).
func TestReadersDrainConcurrent(t *testing.T) {
	var rs readers
	stop := make(chan struct{})
	var wg sync.WaitGroup
	// until runs fn over and over in a goroutine of its own until stop.
	until := func(fn func()) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
					fn()
				}
			}
		}()
	}
	for range 4 { // churn
		until(func() { rs.leave(rs.enter("/v1/keys/{key}")) })
	}
	for range 2 { // drains of their own
		until(func() { <-rs.drain() })
	}
	for i := range 5000 { // a request held across a drain
		tk := rs.enter("/v1/get-many")
		d := rs.drain()
		select {
		case <-d:
			close(stop)
			t.Fatalf("round %d: a drain is done while a request that entered before it is in flight", i)
		default:
		}
		rs.leave(tk)
		<-d
	}
	close(stop)
	wg.Wait()
	<-rs.drain()
}
