package upstreams

import (
	"cmp"
	"errors"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
)

// Target is one backend address as a registry reports it.
type Target struct {
	// Addr is the backend's IP address; invalid when Host is set.
	Addr netip.Addr
	// Host is the backend's DNS name, for registrars that write a name
	// rather than an IP address; Caddy resolves it when it connects, never
	// in GetUpstreams.
	Host string
	// Port is the backend's TCP port.
	Port uint16
	// Weight is the registry's relative weight for this backend. Sources
	// without weights use 1. It is kept for weighted selection policies.
	Weight float64
}

// Dial is the target's network address in the form reverse_proxy dials.
func (t Target) Dial() string {
	host := t.Host
	if host == "" {
		host = t.Addr.String()
	}
	return net.JoinHostPort(host, strconv.Itoa(int(t.Port)))
}

// compareTargets orders IP addresses first, then host names, then ports.
func compareTargets(a, b Target) int {
	return cmp.Or(cmp.Compare(a.Host, b.Host), a.Addr.Compare(b.Addr), cmp.Compare(a.Port, b.Port))
}

// Snapshot is an immutable view of one service: the targets to proxy to, and
// the problem, if any, that the source last saw with it.
type Snapshot struct {
	dials        []string
	weights      []float64
	err          error
	problemKinds kindSet   // err's kinds, for the metrics
	at           time.Time // when it was made, for the admin dump and the metrics
}

// NewSnapshot sorts the targets by address and port, drops duplicates (the same
// endpoint can briefly appear twice, e.g. in two EndpointSlices; of duplicates
// with different weights the largest stays, as across services, see Weight)
// and keeps err, the latest problem of the source. Snapshots with targets serve
// them even when err is set: the last known backends stay in use while a
// registry misbehaves.
func NewSnapshot(targets []Target, err error) *Snapshot {
	sorted := slices.Clone(targets)
	slices.SortFunc(sorted, func(a, b Target) int {
		return cmp.Or(compareTargets(a, b), cmp.Compare(b.Weight, a.Weight))
	})
	sorted = slices.CompactFunc(sorted, func(a, b Target) bool { return compareTargets(a, b) == 0 })
	s := &Snapshot{
		dials:        make([]string, len(sorted)),
		weights:      make([]float64, len(sorted)),
		err:          err,
		problemKinds: kindsOf(err),
		at:           time.Now(),
	}
	for i, t := range sorted {
		s.dials[i] = t.Dial()
		s.weights[i] = t.Weight
	}
	return s
}

// Len is the number of targets.
func (s *Snapshot) Len() int { return len(s.dials) }

// Dials lists the targets' addresses in order. The caller must not modify it.
func (s *Snapshot) Dials() []string { return s.dials }

// Weight is the registry weight of the target at dial, or 0 if there is none.
func (s *Snapshot) Weight(dial string) float64 {
	if i := slices.Index(s.dials, dial); i >= 0 {
		return s.weights[i]
	}
	return 0
}

// Err is the source's latest problem with this service, or nil.
func (s *Snapshot) Err() error { return s.err }

// hasKind reports whether the snapshot's error is a problem of kind k.
func (s *Snapshot) hasKind(k ProblemKind) bool { return s.problemKinds&(1<<k) != 0 }

// Upstreams returns fresh upstream values for the snapshot's targets, in its
// order, with two allocations whatever the number of targets. Without targets
// it returns the snapshot's error, or ErrNoTargets, so that reverse_proxy falls
// back to its static upstreams.
func (s *Snapshot) Upstreams() ([]*reverseproxy.Upstream, error) {
	if len(s.dials) == 0 {
		if s.err != nil {
			return nil, s.err
		}
		return nil, ErrNoTargets
	}
	// reverse_proxy writes into the upstreams it is given (Host, circuit
	// breaker, limits), so every call hands out values of its own.
	values := make([]reverseproxy.Upstream, len(s.dials))
	ptrs := make([]*reverseproxy.Upstream, len(s.dials))
	for i, dial := range s.dials {
		values[i].Dial = dial
		ptrs[i] = &values[i]
	}
	return ptrs, nil
}

// ErrNoTargets is returned for a service that exists but has no usable backends.
var ErrNoTargets = errors.New("no usable backends")

// Cell holds the current snapshot of one service. Writers Store whole new
// snapshots; readers Load without locking. While the cell is registered (see
// Register), its targets' weights are published for weighted selection
// policies too (see LookupWeight), and its snapshots feed the service's
// metrics (see series).
type Cell struct {
	p          atomic.Pointer[Snapshot]
	registered bool    // guarded by index.mu
	series     *series // while registered; guarded by index.mu
}

// Store publishes s, and, if the cell is registered, the weights of its
// targets and what it changes in the service's metrics. Its cost grows with
// the number of targets of this snapshot and the one it replaces only (and
// of the other cells of the same service, during a reload).
func (c *Cell) Store(s *Snapshot) {
	index.mu.Lock()
	defer index.mu.Unlock()
	old := c.p.Swap(s)
	if c.registered {
		publishWeights(c, old, s)
		c.series.observe(c, old, s)
	}
}

// Load returns the current snapshot, or nil before the first Store.
func (c *Cell) Load() *Snapshot { return c.p.Load() }
