package upstreams

import (
	"math"
	"slices"
	"sync"
	"sync/atomic"
)

// The weight index: for every address that a registered Cell currently
// lists, the registry weight to balance it by. Selection policies read it on
// the request path without locks (LookupWeight, Weight.Load, WeightsGeneration);
// Cell.Store, Register and its unregister function keep it current.
//
// A publish touches only the addresses of the service that changed, so its
// cost does not depend on how many services are configured: it diffs the
// cell's previous and new snapshot, and for each of their addresses updates
// one entry (a sync.Map lookup plus a scan of the few services listing that
// address). Writers serialize on one mutex; readers never take it.
var index struct {
	mu     sync.Mutex // writers: Cell.Store, Register, unregister
	byDial sync.Map   // dial string -> *Weight; lock-free reads
	gen    atomic.Uint64
}

// absent is the bit pattern of a Weight whose address no registered cell
// lists any more. Published weights are never NaN (see sanitize), so this
// NaN is free to mean "gone".
const absent = 0x7ff8_0000_dead_0001

// Weight is the registry weight currently published for one address. When
// several registered services list the address with different weights, the
// largest applies. Hold on to it only as long as WeightsGeneration is
// unchanged: after that, the address may have left the index (Load reports
// false) and a later publish may have made a new Weight for it.
type Weight struct {
	bits atomic.Uint64 // math.Float64bits of the weight, or absent
	from []weightFrom  // every registered cell listing the address; guarded by index.mu
}

// weightFrom is one cell's weight for an address.
type weightFrom struct {
	cell   *Cell
	weight float64
}

// Load returns the weight, or false if the address is no longer published.
func (w *Weight) Load() (float64, bool) {
	b := w.bits.Load()
	if b == absent {
		return 0, false
	}
	return math.Float64frombits(b), true
}

// LookupWeight returns the weight published for dial (host:port, as in a
// Snapshot's Dials), or nil if no registered source lists that address. It
// neither locks nor allocates.
func LookupWeight(dial string) *Weight {
	if v, ok := index.byDial.Load(dial); ok {
		return v.(*Weight)
	}
	return nil
}

// WeightsGeneration changes whenever an address enters or leaves the weight
// index (not when a published weight changes value). A caller that caches
// LookupWeight results can keep using them while it is unchanged.
func WeightsGeneration() uint64 { return index.gen.Load() }

// sanitize maps what is not a usable weight (NaN, negative) to 0.
func sanitize(w float64) float64 {
	if !(w > 0) {
		return 0
	}
	return w
}

// publishWeights moves cell c's contribution to the index from snapshot old
// to snapshot s (either may be nil). The caller holds index.mu.
func publishWeights(c *Cell, old, s *Snapshot) {
	if old != nil && s != nil && slices.Equal(old.dials, s.dials) && slices.Equal(old.weights, s.weights) {
		return
	}
	if old != nil && len(old.dials) > 0 {
		var keep map[string]struct{}
		if s != nil && len(s.dials) > 0 {
			keep = make(map[string]struct{}, len(s.dials))
			for _, d := range s.dials {
				keep[d] = struct{}{}
			}
		}
		for _, d := range old.dials {
			if _, ok := keep[d]; !ok {
				withdraw(d, c)
			}
		}
	}
	if s != nil {
		for i, d := range s.dials {
			contribute(d, c, sanitize(s.weights[i]))
		}
	}
}

// contribute sets cell c's weight for dial. The caller holds index.mu.
func contribute(dial string, c *Cell, weight float64) {
	w := LookupWeight(dial)
	if w == nil {
		w = &Weight{from: []weightFrom{{c, weight}}}
		w.bits.Store(math.Float64bits(weight))
		index.byDial.Store(dial, w)
		index.gen.Add(1)
		return
	}
	i := slices.IndexFunc(w.from, func(f weightFrom) bool { return f.cell == c })
	switch {
	case i < 0:
		w.from = append(w.from, weightFrom{c, weight})
	case w.from[i].weight == weight:
		return
	default:
		w.from[i].weight = weight
	}
	w.update()
}

// withdraw removes cell c's weight for dial; the last one out removes the
// address from the index. The caller holds index.mu.
func withdraw(dial string, c *Cell) {
	w := LookupWeight(dial)
	if w == nil {
		return
	}
	w.from = slices.DeleteFunc(w.from, func(f weightFrom) bool { return f.cell == c })
	if len(w.from) > 0 {
		w.update()
		return
	}
	// a reader holding w sees it gone before the generation moves on
	w.bits.Store(absent)
	index.byDial.Delete(dial)
	index.gen.Add(1)
}

// update publishes the largest of the contributions. The caller holds index.mu.
func (w *Weight) update() {
	largest := 0.0
	for _, f := range w.from {
		largest = max(largest, f.weight)
	}
	w.bits.Store(math.Float64bits(largest))
}
