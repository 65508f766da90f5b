//go:build long

package cluster_test

import (
	"testing"
	"time"
)

// The long runs (go test -tags long ./cluster): 2 writers × 40 batches of
// 1,000 (keys rewritten) with the leader SIGKILLed 4 times; porcupine over
// 30 s with 4 kills.
func TestClusterLeaderKillLong(t *testing.T)   { runKillTest(t, 40, 4) }
func TestClusterLinearizableLong(t *testing.T) { runLinear(t, 30*time.Second, 4) }
