package upstreams

import (
	"fmt"
	"net/netip"
	"testing"
)

// weightOf returns the weight published for dial, and whether there is one.
func weightOf(dial string) (float64, bool) {
	w := LookupWeight(dial)
	if w == nil {
		return 0, false
	}
	return w.Load()
}

func expectWeight(t *testing.T, dial string, want float64) {
	t.Helper()
	got, ok := weightOf(dial)
	switch {
	case want < 0 && ok:
		t.Fatalf("weight of %s = %v, want none", dial, got)
	case want >= 0 && (!ok || got != want):
		t.Fatalf("weight of %s = %v (published: %v), want %v", dial, got, ok, want)
	}
}

func TestWeightsFollowCell(t *testing.T) {
	var c Cell
	c.Store(NewSnapshot([]Target{target("10.7.0.1", 80, 3)}, nil))
	expectWeight(t, "10.7.0.1:80", -1) // not registered: nothing published

	unregister := Register("test", "follow", &c)
	expectWeight(t, "10.7.0.1:80", 3) // registering publishes the current snapshot

	w, gen := LookupWeight("10.7.0.1:80"), WeightsGeneration()
	c.Store(NewSnapshot([]Target{target("10.7.0.1", 80, 0.5), target("10.7.0.2", 80, 1)}, nil))
	expectWeight(t, "10.7.0.1:80", 0.5)
	expectWeight(t, "10.7.0.2:80", 1)
	if LookupWeight("10.7.0.1:80") != w {
		t.Fatal("a weight change must update the address's Weight in place")
	}
	if WeightsGeneration() == gen {
		t.Fatal("an address entering the index must change the generation")
	}

	gen = WeightsGeneration()
	c.Store(NewSnapshot([]Target{target("10.7.0.1", 80, 0.5), target("10.7.0.2", 80, 2)}, nil))
	if WeightsGeneration() != gen {
		t.Fatal("a weight change alone must keep the generation")
	}

	c.Store(NewSnapshot([]Target{target("10.7.0.2", 80, 2)}, nil))
	expectWeight(t, "10.7.0.1:80", -1)
	if _, ok := w.Load(); ok {
		t.Fatal("a Weight held across the address's removal must report it gone")
	}
	if WeightsGeneration() == gen {
		t.Fatal("an address leaving the index must change the generation")
	}

	c.Store(NewSnapshot([]Target{target("10.7.0.2", 80, -1), target("10.7.0.3", 80, 1)}, nil))
	expectWeight(t, "10.7.0.2:80", 0) // negative (or NaN) counts as 0

	unregister()
	unregister() // safe twice
	expectWeight(t, "10.7.0.2:80", -1)
	expectWeight(t, "10.7.0.3:80", -1)
	c.Store(NewSnapshot([]Target{target("10.7.0.4", 80, 1)}, nil))
	expectWeight(t, "10.7.0.4:80", -1) // after unregistering, nothing is published
}

// TestWeightsTwoServices: an address in two services weighs the largest of
// their weights, whatever the order of registering, changing and leaving.
func TestWeightsTwoServices(t *testing.T) {
	var a, b Cell
	a.Store(NewSnapshot([]Target{target("10.7.1.1", 80, 2)}, nil))
	b.Store(NewSnapshot([]Target{target("10.7.1.1", 80, 5), target("10.7.1.2", 80, 1)}, nil))
	unA := Register("test", "a", &a)
	unB := Register("test", "b", &b)
	expectWeight(t, "10.7.1.1:80", 5)

	b.Store(NewSnapshot([]Target{target("10.7.1.1", 80, 1), target("10.7.1.2", 80, 1)}, nil))
	expectWeight(t, "10.7.1.1:80", 2)
	a.Store(NewSnapshot([]Target{target("10.7.1.1", 80, 0.1)}, nil))
	expectWeight(t, "10.7.1.1:80", 1)
	unB()
	expectWeight(t, "10.7.1.1:80", 0.1)
	unA()
	expectWeight(t, "10.7.1.1:80", -1)

	// one service listing the address twice (e.g. in two clusters) with
	// different weights: the same rule
	s := NewSnapshot([]Target{target("10.7.1.3", 80, 1), target("10.7.1.3", 80, 4), target("10.7.1.3", 80, 2)}, nil)
	if s.Len() != 1 || s.Weight("10.7.1.3:80") != 4 {
		t.Fatalf("duplicates with weights 1, 4, 2 kept %v with weight %v, want one with 4", s.Dials(), s.Weight("10.7.1.3:80"))
	}
}

// TestWeightsReload: a reload registers the new config's cell before it
// unregisters the old one's; addresses both list never lose their weight.
func TestWeightsReload(t *testing.T) {
	targets := []Target{target("10.7.2.1", 80, 1), target("10.7.2.2", 80, 7)}
	var old, next Cell
	old.Store(NewSnapshot(targets, nil))
	unOld := Register("test", "reload", &old)
	w, gen := LookupWeight("10.7.2.2:80"), WeightsGeneration()

	next.Store(NewSnapshot(targets, nil))
	unNext := Register("test", "reload", &next)
	unOld()
	expectWeight(t, "10.7.2.2:80", 7)
	if LookupWeight("10.7.2.2:80") != w || WeightsGeneration() != gen {
		t.Fatal("a reload of the same service must keep the published weights untouched")
	}
	unNext()
	expectWeight(t, "10.7.2.2:80", -1)
}

func TestLookupWeightAllocations(t *testing.T) {
	var c Cell
	c.Store(NewSnapshot([]Target{target("10.7.3.1", 80, 2)}, nil))
	defer Register("test", "allocs", &c)()
	dial, missing := "10.7.3.1:80", "10.7.3.2:80"
	if n := testing.AllocsPerRun(1000, func() {
		if w := LookupWeight(dial); w == nil {
			t.Fatal("weight not found")
		} else if _, ok := w.Load(); !ok {
			t.Fatal("weight gone")
		}
		_ = LookupWeight(missing)
		_ = WeightsGeneration()
	}); n != 0 {
		t.Fatalf("looking up weights allocates %v times, want 0", n)
	}
}

// BenchmarkStoreWeights times publishing one service's change (one of its
// 10 instances changes weight) while other registered services hold 10
// instances each: the cost must not grow with their number.
func BenchmarkStoreWeights(b *testing.B) {
	for _, services := range []int{10, 1000, 10000} {
		b.Run(fmt.Sprintf("services=%d", services), func(b *testing.B) {
			others := make([]Cell, services)
			for i := range others {
				var ts []Target
				for j := range 10 {
					ts = append(ts, Target{Addr: netip.AddrFrom4([4]byte{10, 8, byte(i >> 8), byte(i)}), Port: uint16(1000 + j), Weight: 1})
				}
				others[i].Store(NewSnapshot(ts, nil))
				defer Register("bench", fmt.Sprint(i), &others[i])()
			}
			var c Cell
			defer Register("bench", "changing", &c)()
			snaps := make([]*Snapshot, 2)
			for k := range snaps {
				var ts []Target
				for j := range 10 {
					ts = append(ts, target("10.9.0.1", uint16(1000+j), float64(1+k*(j%2))))
				}
				snaps[k] = NewSnapshot(ts, nil)
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				c.Store(snaps[i%2])
				i++
			}
		})
	}
}
