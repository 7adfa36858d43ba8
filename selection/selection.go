// Package selection holds load-balancing selection policies that use what
// the registry sources of this module publish.
package selection

import (
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"

	"github.com/caddy-discovery/caddy-discovery/upstreams"
)

func init() {
	caddy.RegisterModule(new(RegistryWeightedSelection))
}

const (
	// unit is one weight in the policy's fixed-point arithmetic: weights
	// count in millionths, so that 0.1 and 1 keep their exact ratio.
	unit = 1_000_000
	// maxWeight caps a weight, so that sums of up to millions of
	// upstreams cannot overflow.
	maxWeight = 1_000_000
)

// RegistryWeightedSelection is a policy that selects upstreams in proportion
// to the weight their registry gives them (a Nacos instance's weight), in
// nginx's smooth weighted round-robin order: with weights 1, 2 and 7, every
// 10 consecutive selections pick them exactly 1, 2 and 7 times, interleaved
// rather than in runs (after a change of weights, availability or pool, give
// or take one for the next few rounds, as in nginx).
//
// Weights belong to addresses (host:port), as the upstream sources of this
// module publish them; they are not configured here. An upstream that no
// source lists, such as a static `to` address, weighs 1, and so does every
// Kubernetes backend. When several services list the same address with
// different weights, the largest applies, whichever reverse_proxy selects it.
// Weights count to a millionth, and a weight above 1000000 counts as 1000000.
// An upstream with weight 0 is never selected.
//
// Unavailable upstreams (unhealthy by active or passive health checks, or
// at their max_requests) are skipped as by Caddy's own policies, and the
// others keep their ratio among themselves. When no upstream is available, none
// is selected, and reverse_proxy retries within lb_try_duration as with any
// policy. Every selection, a retry's included, takes the next place in the
// sequence.
//
// A weight change applies from the next selection on. When upstreams join
// or leave the pool, the others keep their place in the sequence and a new
// one starts at nginx's initial state for it (a current weight of 0, with the
// others re-centered around 0, which does not change their order); an
// upstream that leaves and comes back starts over. The sequence is kept per
// reverse_proxy handler, in memory, and starts over on a config reload; each
// Caddy instance runs its own.
//
// Selecting waits for nothing but a short critical section of its own (none
// for a pool of one upstream): the weights are read from what the sources
// publish, without locks. It allocates only when the pool outgrows its largest
// size yet, or, for a pool of one, when that upstream or the set of published
// addresses changes.
type RegistryWeightedSelection struct {
	mu    sync.Mutex
	gen   uint64 // upstreams.WeightsGeneration that slots were looked up at
	slots []slot // one per upstream of the last pool, in its order
	carry map[string]int64
	one   atomic.Pointer[single] // a one-upstream pool's lookup, read without the lock
}

// single is the lookup of a pool of one upstream, which needs no order.
type single struct {
	gen    uint64
	dial   string
	weight *upstreams.Weight
}

// slot is the state of one upstream: its weight and nginx's current weight.
type slot struct {
	dial    string
	weight  *upstreams.Weight // nil: no registry weight
	current int64
}

// CaddyModule returns the Caddy module information.
func (*RegistryWeightedSelection) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.reverse_proxy.selection_policies.registry_weighted",
		New: func() caddy.Module { return new(RegistryWeightedSelection) },
	}
}

// UnmarshalCaddyfile sets up the module from Caddyfile tokens. Syntax:
//
//	lb_policy registry_weighted
func (s *RegistryWeightedSelection) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume policy name
	if d.NextArg() {
		return d.ArgErr()
	}
	if d.NextBlock(0) {
		return d.Errf("unrecognized registry_weighted option '%s': the policy has no options; weights come from the registry", d.Val())
	}
	return nil
}

// Select returns the available upstream that nginx's smooth weighted round
// robin picks next, or nil if no upstream is available with a weight above 0.
func (s *RegistryWeightedSelection) Select(pool reverseproxy.UpstreamPool, _ *http.Request, _ http.ResponseWriter) *reverseproxy.Upstream {
	gen := upstreams.WeightsGeneration()
	if len(pool) == 1 {
		// nginx's single-peer path: no order to keep, no lock to take
		if o := s.one.Load(); o != nil && o.gen == gen && same(o.dial, pool[0].Dial) {
			if pool[0].Available() && units(o.weight) > 0 {
				return pool[0]
			}
			return nil
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.matches(pool, gen) {
		s.lookup(pool, gen)
		if len(pool) == 1 {
			s.one.Store(&single{gen: gen, dial: pool[0].Dial, weight: s.slots[0].weight})
		}
	}
	best, total := -1, int64(0)
	for i, up := range pool {
		if !up.Available() {
			continue
		}
		sl := &s.slots[i]
		w := units(sl.weight)
		if w == 0 {
			continue
		}
		sl.current += w
		total += w
		if best < 0 || sl.current > s.slots[best].current {
			best = i
		}
	}
	if best < 0 {
		return nil
	}
	s.slots[best].current -= total
	return pool[best]
}

// matches reports whether the slots are those of pool, with weights looked
// up at generation gen.
func (s *RegistryWeightedSelection) matches(pool reverseproxy.UpstreamPool, gen uint64) bool {
	if gen != s.gen || len(pool) != len(s.slots) {
		return false
	}
	for i, up := range pool {
		if !same(up.Dial, s.slots[i].dial) {
			return false
		}
	}
	return true
}

// same is a == b, without a call when both share their bytes, as the dials
// of upstreams from one source snapshot (or one static list) do.
func same(a, b string) bool {
	return len(a) == len(b) && (unsafe.StringData(a) == unsafe.StringData(b) || a == b)
}

// lookup sets the slots up for pool, looking up each upstream's weight.
// Upstreams that were in the last pool keep their current weight, shifted
// by the same amount so that they add up to about 0 again (as they do after
// every selection); new ones start at 0, as in nginx. It allocates only when
// the pool is larger than any before.
func (s *RegistryWeightedSelection) lookup(pool reverseproxy.UpstreamPool, gen uint64) {
	if s.carry == nil {
		s.carry = make(map[string]int64, len(pool))
	}
	clear(s.carry)
	for _, sl := range s.slots {
		s.carry[sl.dial] = sl.current
	}
	var sum, kept int64
	for _, up := range pool {
		if c, ok := s.carry[up.Dial]; ok {
			sum += c
			kept++
		}
	}
	shift := int64(0)
	if kept > 0 {
		shift = sum / kept
	}
	s.slots = slices.Grow(s.slots[:0], len(pool))[:len(pool)]
	for i, up := range pool {
		c, ok := s.carry[up.Dial]
		if ok {
			c -= shift
		}
		s.slots[i] = slot{dial: up.Dial, weight: upstreams.LookupWeight(up.Dial), current: c}
	}
	s.gen = gen
}

// units is a weight in units: 1 without a registry weight.
func units(weight *upstreams.Weight) int64 {
	if weight == nil {
		return unit
	}
	w, ok := weight.Load()
	if !ok {
		return unit
	}
	return toUnits(w)
}

// toUnits converts a weight to units, rounding, and a positive weight to at
// least one unit.
func toUnits(w float64) int64 {
	switch {
	case !(w > 0):
		return 0
	case w >= maxWeight:
		return maxWeight * unit
	}
	return max(int64(w*unit+0.5), 1)
}

// Interface guards
var (
	_ reverseproxy.Selector = (*RegistryWeightedSelection)(nil)
	_ caddyfile.Unmarshaler = (*RegistryWeightedSelection)(nil)
)
