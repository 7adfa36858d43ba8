package upstreams

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics, in Caddy's registry (served on the admin API's /metrics).
//
// Caddy gives every config load a fresh registry (caddy.Context.
// GetMetricsRegistry), while sources, their watches and connections live on
// across reloads in usage pools. So the collectors are process-wide and
// registered into each config's registry (RegisterMetrics), as Caddy's own
// reverse_proxy does with its upstreams_healthy gauge: counters go on
// counting across reloads, and a config's registry reports each series
// once, however many configs overlap during a reload.
//
// Per source and service, the metrics follow Cell.Store: a Cell registered
// under a source and service (Register) contributes to that pair's series,
// which every cell registered under the same pair shares. During a reload,
// the new config's cells register before the old config's leave; the series
// counts what enters it once, whichever cell brings it (see series.observe).
// A series ends, and its labels leave the metrics, when its last cell leaves.
var (
	serviceLabels    = []string{"source", "service"}
	connectionLabels = []string{"source", "connection"}

	backendsGauge = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "caddy_discovery_backends",
		Help: "Backends in use: the distinct addresses the sources of a service currently proxy to.",
	}, serviceLabels)
	updatesTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "caddy_discovery_updates_total",
		Help: "Changes of a service's backends (addresses or weights) that were applied.",
	}, serviceLabels)
	problemsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "caddy_discovery_problems_total",
		Help: "Problems with a service that began, by kind; a problem that persists across retries counts once.",
	}, append(slices.Clone(serviceLabels), "kind"))
	lastUpdateGauge = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "caddy_discovery_last_update_timestamp_seconds",
		Help: "When a service's backends last changed (unix seconds); absent until the first change.",
	}, serviceLabels)

	connectedGauge = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "caddy_discovery_connected",
		Help: "1 while every watch (k8s) or client (nacos) of a connection works, else 0.",
	}, connectionLabels)
	reconnectsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "caddy_discovery_reconnects_total",
		Help: "Times a connection came back after it had been lost.",
	}, connectionLabels)
	watchRestartsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "caddy_discovery_watch_restarts_total",
		Help: "Watches (k8s) or subscriptions (nacos) re-established after an error, an expiry or a reconnect.",
	}, connectionLabels)
)

// sourceCollectors are the sources' own collectors (see AddCollector).
var sourceCollectors struct {
	mu sync.Mutex
	cs []prometheus.Collector
}

// AddCollector has RegisterMetrics register c too. Sources call it from
// init for metrics of their own, such as propagation histograms.
func AddCollector(c prometheus.Collector) {
	sourceCollectors.mu.Lock()
	sourceCollectors.cs = append(sourceCollectors.cs, c)
	sourceCollectors.mu.Unlock()
}

// RegisterMetrics registers the discovery metrics in reg, normally a
// config's registry (caddy.Context.GetMetricsRegistry). Registering them
// again in the same registry does nothing, so every module of a config may
// call it.
func RegisterMetrics(reg prometheus.Registerer) error {
	if reg == nil {
		return nil
	}
	sourceCollectors.mu.Lock()
	cs := append([]prometheus.Collector{
		backendsGauge, updatesTotal, problemsTotal, lastUpdateGauge,
		connectedGauge, reconnectsTotal, watchRestartsTotal,
	}, sourceCollectors.cs...)
	sourceCollectors.mu.Unlock()
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			var already prometheus.AlreadyRegisteredError
			if errors.As(err, &already) && already.ExistingCollector == c {
				continue
			}
			return fmt.Errorf("registering discovery metrics: %w", err)
		}
	}
	return nil
}

// ProblemKind classifies a source's problem with a service, for the kind
// label of caddy_discovery_problems_total. The set is fixed, which keeps the
// metric's cardinality bounded.
type ProblemKind uint8

// The kinds of problems. A source marks its errors with Problem; an error
// that no source marked is KindOther.
const (
	// KindOther is a problem no source classified.
	KindOther ProblemKind = iota
	// KindUnreachable: the registry's server cannot be reached, or the
	// connection to it was lost.
	KindUnreachable
	// KindUnauthorized: the server rejected the credentials (401, a refused
	// Nacos login).
	KindUnauthorized
	// KindForbidden: the credentials may not read what the source needs (403).
	KindForbidden
	// KindRefused: the server refused without saying why (a Nacos
	// subscription that no instance list followed).
	KindRefused
	// KindNotFound: what the reference names does not exist (a Service, a
	// namespace, a Nacos service), or the server does not serve the API.
	KindNotFound
	// KindMisconfigured: the service exists, but not as the source's
	// settings need it (no such port, headless for cluster_ip, ExternalName).
	KindMisconfigured
	// KindNoBackends: the service exists and has no usable backend.
	KindNoBackends

	numKinds
)

var kindNames = [numKinds]string{"other", "unreachable", "unauthorized", "forbidden", "refused", "not_found", "misconfigured", "no_backends"}

// String is the kind's label value.
func (k ProblemKind) String() string {
	if k < numKinds {
		return kindNames[k]
	}
	return fmt.Sprintf("ProblemKind(%d)", uint8(k))
}

// kindError marks an error with a kind, or as pending. Its message is the
// wrapped error's.
type kindError struct {
	kind    ProblemKind
	pending bool
	err     error
}

func (e *kindError) Error() string { return e.err.Error() }
func (e *kindError) Unwrap() error { return e.err }

// Problem marks err as a problem of the given kind; the message stays err's,
// and errors.Is and errors.As see through the mark. Problem(k, nil) is nil.
func Problem(kind ProblemKind, err error) error {
	if err == nil {
		return nil
	}
	return &kindError{kind: kind, err: err}
}

// Pending marks err as the wait for a registry's first answer: shown like a
// problem (it is the reason there are no backends yet), but not counted as
// one. Pending(nil) is nil.
func Pending(err error) error {
	if err == nil {
		return nil
	}
	return &kindError{pending: true, err: err}
}

// kindSet is a set of ProblemKinds, one bit each.
type kindSet uint16

// kindsOf lists the kinds marked anywhere in err's tree. An error without
// marks is KindNoBackends if it wraps ErrNoTargets, else KindOther, unless
// it is pending.
func kindsOf(err error) kindSet {
	if err == nil {
		return 0
	}
	var set kindSet
	pending, noTargets := false, false
	var walk func(error)
	walk = func(e error) {
		if e == ErrNoTargets {
			noTargets = true
		}
		if k, ok := e.(*kindError); ok {
			if k.pending {
				pending = true
			} else {
				set |= 1 << k.kind
			}
		}
		switch u := e.(type) {
		case interface{ Unwrap() error }:
			if next := u.Unwrap(); next != nil {
				walk(next)
			}
		case interface{ Unwrap() []error }:
			for _, next := range u.Unwrap() {
				if next != nil {
					walk(next)
				}
			}
		}
	}
	walk(err)
	switch {
	case set != 0 || pending:
	case noTargets:
		set = 1 << KindNoBackends
	default:
		set = 1 << KindOther
	}
	return set
}

// ProblemKinds lists the kinds of problem that err reports, as
// caddy_discovery_problems_total counts them: none for nil or a pending
// error.
func ProblemKinds(err error) []ProblemKind {
	var kinds []ProblemKind
	set := kindsOf(err)
	for k := range numKinds {
		if set&(1<<k) != 0 {
			kinds = append(kinds, k)
		}
	}
	return kinds
}

// series is the metrics of one source and service, fed by every registered
// cell with that pair. Its fields are guarded by index.mu.
type series struct {
	source, service string
	cells           []*Cell
	backends        prometheus.Gauge
	updates         prometheus.Counter
	problems        [numKinds]prometheus.Counter
}

// seriesByName holds the live series; guarded by index.mu.
var seriesByName = make(map[[2]string]*series)

// joinSeries adds cell c, registered as source and service, to its series,
// which it creates if needed, and counts what c's current snapshot brings.
// The caller holds index.mu.
func joinSeries(c *Cell, source, service string) {
	// Prometheus panics on a label value that is not UTF-8, with index.mu
	// held; a config's JSON cannot carry one, code setting fields can.
	source, service = strings.ToValidUTF8(source, "\uFFFD"), strings.ToValidUTF8(service, "\uFFFD")
	key := [2]string{source, service}
	s := seriesByName[key]
	if s == nil {
		s = &series{
			source:   source,
			service:  service,
			backends: backendsGauge.WithLabelValues(source, service),
			updates:  updatesTotal.WithLabelValues(source, service),
		}
		for k := range numKinds {
			// present from the start, so that the first problem is an increase
			s.problems[k] = problemsTotal.WithLabelValues(source, service, k.String())
		}
		seriesByName[key] = s
	}
	s.cells = append(s.cells, c)
	c.series = s
	s.observe(c, nil, c.Load())
}

// leaveSeries removes cell c from its series; the last cell out ends the
// series and removes its labels from the metrics. The caller holds index.mu.
func leaveSeries(c *Cell) {
	s := c.series
	if s == nil {
		return
	}
	c.series = nil
	s.cells = slices.DeleteFunc(s.cells, func(x *Cell) bool { return x == c })
	if len(s.cells) > 0 {
		s.backends.Set(float64(s.backendCount()))
		return
	}
	delete(seriesByName, [2]string{s.source, s.service})
	backendsGauge.DeleteLabelValues(s.source, s.service)
	updatesTotal.DeleteLabelValues(s.source, s.service)
	lastUpdateGauge.DeleteLabelValues(s.source, s.service)
	for k := range numKinds {
		problemsTotal.DeleteLabelValues(s.source, s.service, k.String())
	}
}

// observe counts what cell c's move from snapshot old to now (either may be
// nil) brings into the series: a problem kind that no other cell of the
// series has at the moment begins; backends that no other cell lists as
// they are now are an update. So when the old and new config's cells of a
// reload publish the same change one after the other, it counts once. The
// caller holds index.mu, and c already holds now.
func (s *series) observe(c *Cell, old, now *Snapshot) {
	if added := now.kinds() &^ old.kinds(); added != 0 {
		var others kindSet
		for _, x := range s.cells {
			if x != c {
				others |= x.Load().kinds()
			}
		}
		for k := range numKinds {
			if (added&^others)&(1<<k) != 0 {
				s.problems[k].Inc()
			}
		}
	}
	if !sameBackends(old, now) && !slices.ContainsFunc(s.cells, func(x *Cell) bool {
		return x != c && sameBackends(x.Load(), now)
	}) {
		s.updates.Inc()
		lastUpdateGauge.WithLabelValues(s.source, s.service).Set(float64(now.at.UnixNano()) / 1e9)
	}
	s.backends.Set(float64(s.backendCount()))
}

// backendCount is the number of distinct addresses the series' cells list.
func (s *series) backendCount() int {
	if len(s.cells) == 1 {
		if snap := s.cells[0].Load(); snap != nil {
			return len(snap.dials)
		}
		return 0
	}
	seen := make(map[string]struct{})
	for _, c := range s.cells {
		if snap := c.Load(); snap != nil {
			for _, d := range snap.dials {
				seen[d] = struct{}{}
			}
		}
	}
	return len(seen)
}

// kinds is the snapshot's problem kinds; none for a nil snapshot.
func (s *Snapshot) kinds() kindSet {
	if s == nil {
		return 0
	}
	return s.problemKinds
}

// sameBackends reports whether two snapshots (nil: none) list the same
// addresses with the same weights.
func sameBackends(a, b *Snapshot) bool {
	var ad, bd []string
	var aw, bw []float64
	if a != nil {
		ad, aw = a.dials, a.weights
	}
	if b != nil {
		bd, bw = b.dials, b.weights
	}
	return slices.Equal(ad, bd) && slices.Equal(aw, bw)
}

// Link is one watch set (k8s) or client (nacos) of a connection, for the
// per-connection metrics: a source pushes its state into it. Several links
// with the same source and connection name (one per watched namespace or
// per client) share the connection's series; it counts as connected while
// all of them are.
type Link struct {
	c         *linkSeries
	connected bool // guarded by links.mu
	wasUp     bool // it has been connected; guarded by links.mu
	closed    bool // guarded by links.mu
}

// linkSeries is the metrics of one connection. Guarded by links.mu.
type linkSeries struct {
	source, name string
	members      map[*Link]struct{}
	lost         bool // some member was connected and is not now
	connected    prometheus.Gauge
	reconnects   prometheus.Counter
	restarts     prometheus.Counter
	propagation  *prometheus.HistogramVec // the source's own, by connection; may be nil
	observer     prometheus.Observer
}

var links = struct {
	mu     sync.Mutex
	series map[[2]string]*linkSeries
}{series: make(map[[2]string]*linkSeries)}

// NewLink joins the series of connection name of source (the cluster's or
// server's name as errors show it, never a secret), not connected yet. If
// propagation is set (a histogram with the one label "connection"), Observe
// records into it. Close leaves the series.
func NewLink(source, name string, propagation *prometheus.HistogramVec) *Link {
	links.mu.Lock()
	defer links.mu.Unlock()
	key := [2]string{source, name}
	c := links.series[key]
	if c == nil {
		c = &linkSeries{
			source:      source,
			name:        name,
			members:     make(map[*Link]struct{}),
			connected:   connectedGauge.WithLabelValues(source, name),
			reconnects:  reconnectsTotal.WithLabelValues(source, name),
			restarts:    watchRestartsTotal.WithLabelValues(source, name),
			propagation: propagation,
		}
		if propagation != nil {
			c.observer = propagation.WithLabelValues(name)
		}
		links.series[key] = c
	}
	l := &Link{c: c}
	c.members[l] = struct{}{}
	c.update(false)
	return l
}

// SetConnected reports whether the link works now. A link that comes back
// after having been connected counts a reconnect of its connection, once
// all of its links that had been connected are back.
func (l *Link) SetConnected(up bool) {
	links.mu.Lock()
	defer links.mu.Unlock()
	if l.closed || l.connected == up {
		return
	}
	l.connected = up
	l.wasUp = l.wasUp || up
	l.c.update(true)
}

// WatchRestarted counts a watch or subscription re-established after an
// error, an expiry or a reconnect.
func (l *Link) WatchRestarted() {
	l.c.restarts.Inc()
}

// Observe records d, the time a change took to be published, in the
// source's propagation histogram, if it has one. Negative durations (clock
// skew between the registry and Caddy) count as 0.
func (l *Link) Observe(d time.Duration) {
	if l.c.observer != nil {
		l.c.observer.Observe(max(d, 0).Seconds())
	}
}

// Close leaves the connection's series; the last link out removes its
// labels from the metrics.
func (l *Link) Close() {
	links.mu.Lock()
	defer links.mu.Unlock()
	if l.closed {
		return
	}
	l.closed = true
	c := l.c
	delete(c.members, l)
	if len(c.members) > 0 {
		c.update(false)
		return
	}
	delete(links.series, [2]string{c.source, c.name})
	connectedGauge.DeleteLabelValues(c.source, c.name)
	reconnectsTotal.DeleteLabelValues(c.source, c.name)
	watchRestartsTotal.DeleteLabelValues(c.source, c.name)
	if c.propagation != nil {
		c.propagation.DeleteLabelValues(c.name)
	}
}

// update sets the connected gauge and, if count is set, counts a reconnect
// when the last lost member is back. Members that were never connected (new
// ones, or those refused from the start) keep the gauge at 0 but are not
// lost: their first connection is no reconnect. The caller holds links.mu.
func (c *linkSeries) update(count bool) {
	connected, lost := len(c.members) > 0, false
	for m := range c.members {
		connected = connected && m.connected
		lost = lost || m.wasUp && !m.connected
	}
	if count && c.lost && !lost {
		c.reconnects.Inc()
	}
	c.lost = lost
	if connected {
		c.connected.Set(1)
	} else {
		c.connected.Set(0)
	}
}
