package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/simdr-go/simdr"
	"github.com/simdr-go/simdr/client"
)

type kvInput struct {
	put        bool
	move       bool // client.Move: a strong read, then a DELETE with If-Match naming the entry read
	key, value string
}

type kvOutput struct {
	value   string // a get's value, a move's value copied ("" for none)
	unknown bool   // a put or move whose outcome is not known (it failed): it may take effect any time after its call
}

// kvModel is a register per key; a missing key reads as "". A move reads
// the value and deletes it if it is still the same entry: it takes effect
// at its delete when it deletes (nothing was written between its read and
// its delete, or the If-Match would fail), else at its read, so one point
// serves; that it deleted is not known (Move returns nil for both), so it
// may leave either state.
var kvModel = (&porcupine.NondeterministicModel{
	Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
		by := map[string][]porcupine.Operation{}
		for _, op := range h {
			k := op.Input.(kvInput).key
			by[k] = append(by[k], op)
		}
		var out [][]porcupine.Operation
		for _, ops := range by {
			out = append(out, ops)
		}
		return out
	},
	Init: func() []any { return []any{""} },
	Step: func(state, input, output any) []any {
		in, out := input.(kvInput), output.(kvOutput)
		switch {
		case in.put:
			return []any{in.value}
		case in.move && out.unknown:
			return []any{state, ""}
		case in.move:
			if out.value != state.(string) {
				return nil
			}
			return []any{state, ""}
		case out.value == state.(string):
			return []any{state}
		}
		return nil
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(kvInput), output.(kvOutput)
		switch {
		case in.put:
			return fmt.Sprintf("put(%s, %s)", in.key, in.value)
		case in.move && out.unknown:
			return fmt.Sprintf("move(%s) -> ?", in.key)
		case in.move:
			return fmt.Sprintf("move(%s) -> %s", in.key, out.value)
		}
		return fmt.Sprintf("get(%s) -> %s", in.key, out.value)
	},
}).ToModel()

// runLinear runs clients doing puts and strong gets on a few keys through
// the Go client (which retries across the nodes) while the leader is
// killed kills times, and checks the history with porcupine.
func runLinear(t *testing.T, dur time.Duration, kills int) {
	c := newCluster(t, 3)
	urls := []string{c.nodes[0].url(), c.nodes[1].url(), c.nodes[2].url()}
	var mu sync.Mutex
	var history []porcupine.Operation
	t0 := time.Now()
	now := func() int64 { return int64(time.Since(t0)) }
	ctx, cancel := context.WithTimeout(context.Background(), dur)
	defer cancel()
	var wg sync.WaitGroup
	const clients, keys = 4, 3
	for id := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			order := append(urls[id%3:], urls[:id%3]...)
			cl, err := client.New(order[0], &client.Options{Token: token, Nodes: order[1:], StrongReads: true, MaxAttempts: 60})
			if err != nil {
				t.Error(err)
				return
			}
			dst, err := simdr.Open(filepath.Join(t.TempDir(), fmt.Sprintf("dst%d.simdr", id)), nil)
			if err != nil {
				t.Error(err)
				return
			}
			defer dst.Close()
			for i := 0; ctx.Err() == nil; i++ {
				key := fmt.Sprintf("lin%d", (id+i)%keys)
				in := kvInput{put: i%6 == 0 || i%6 == 2, move: i%6 == 4, key: key, value: fmt.Sprintf("c%d-%d", id, i)}
				if in.move {
					in.value = ""
					if err := dst.Delete([]byte(key)); err != nil && !errors.Is(err, simdr.ErrNotFound) {
						t.Error(err)
						return
					}
				}
				octx, ocancel := context.WithTimeout(context.Background(), 5*time.Second)
				call := now()
				var out kvOutput
				var oerr error
				switch {
				case in.put:
					oerr = cl.Put(octx, []byte(key), []byte(in.value))
					out.unknown = oerr != nil
				case in.move:
					oerr = cl.Move(octx, []byte(key), client.Local(dst))
					switch {
					case errors.Is(oerr, simdr.ErrNotFound):
						oerr = nil // nothing to move: read as ""
					case oerr == nil:
						if e, err := dst.Get([]byte(key)); err == nil {
							out.value = string(e.Bytes())
						}
					case strings.Contains(oerr.Error(), "not deleted from the source"):
						out.unknown = true // copied; the delete may have been applied
					}
				default:
					var v []byte
					v, oerr = cl.Get(octx, []byte(key))
					if errors.Is(oerr, simdr.ErrNotFound) {
						oerr = nil
					}
					out.value = string(v)
				}
				ocancel()
				ret := now()
				if oerr != nil && !out.unknown && !in.put {
					continue // a failed read (or a move that failed before its delete) says nothing
				}
				if out.unknown {
					ret = math.MaxInt64 // may take effect any time later
				}
				mu.Lock()
				history = append(history, porcupine.Operation{ClientId: id, Input: in, Call: call, Output: out, Return: ret})
				mu.Unlock()
				if out.unknown {
					return // a client with a pending op issues no more (porcupine's model of a client)
				}
			}
		}()
	}
	for k := range kills {
		select {
		case <-time.After(dur / time.Duration(kills+1)):
		case <-ctx.Done():
		}
		if l := c.leader(); l != nil {
			c.kill(l)
			t.Logf("kill %d: %s", k+1, l.id)
			c.waitLeader(10 * time.Second)
			c.start(l)
		}
	}
	wg.Wait()
	res, info := porcupine.CheckOperationsVerbose(kvModel, history, 30*time.Second)
	t.Logf("%d operations, %v", len(history), res)
	if res == porcupine.Illegal {
		// The picture of the history (open it in a browser) is kept: the
		// test's temporary directory is removed with the test.
		viz := filepath.Join(os.TempDir(), fmt.Sprintf("simdr-linear-%d.html", time.Now().UnixNano()))
		if err := porcupine.VisualizePath(kvModel, info, viz); err != nil {
			t.Logf("visualize: %v", err)
		}
		t.Fatalf("the history of %d operations is not linearizable (picture: %s)", len(history), viz)
	}
}

func TestClusterLinearizable(t *testing.T) { runLinear(t, 10*time.Second, 2) }
