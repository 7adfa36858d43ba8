// Prometheus metrics of the upstream sources: every collector's definition
// (names, help, labels), their registration into a config's registry
// (RegisterMetrics, AddCollector), and the per-service series that
// Cell.Store feeds through Register (joinSeries, leaveSeries,
// series.observe) and serviceCollector reports. The per-connection series behind Link are in link.go;
// the problem kinds that label caddy_discovery_problems_total are in
// problem.go.

package upstreams

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

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
// A series is a few counters in a struct, which serviceCollector reads at
// each scrape: a service costs no Prometheus child metric of its own.
var (
	serviceLabels    = []string{"source", "service"}
	connectionLabels = []string{"source", "connection"}

	backendsDesc = prometheus.NewDesc("caddy_discovery_backends",
		"Backends in use: the distinct addresses the sources of a service currently proxy to.", serviceLabels, nil)
	updatesDesc = prometheus.NewDesc("caddy_discovery_updates_total",
		"Changes of a service's backends (addresses or weights) that were applied.", serviceLabels, nil)
	problemsDesc = prometheus.NewDesc("caddy_discovery_problems_total",
		"Problems with a service that began, by kind; a problem that persists across retries counts once.", append(slices.Clone(serviceLabels), "kind"), nil)
	lastUpdateDesc = prometheus.NewDesc("caddy_discovery_last_update_timestamp_seconds",
		"When a service's backends last changed (unix seconds); absent until the first change.", serviceLabels, nil)

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

	// Services chosen per request (see PerRequest), by source kind.
	watched = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "caddy_discovery_per_request_services",
		Help: "Services chosen per request that the sources follow.",
	}, []string{"source"})
	lookups = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "caddy_discovery_per_request_lookups_total",
		Help: "Requests that chose a service, by result: hit, new, denied, invalid, unknown, over_capacity, timeout, unavailable.",
	}, []string{"source", "result"})
	evictions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "caddy_discovery_per_request_evictions_total",
		Help: "Services chosen per request that were dropped after idle_timeout.",
	}, []string{"source"})
	firstAnswerSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "caddy_discovery_per_request_first_answer_seconds",
		Help:    "Time from a new service's first request to the registry's first answer about it.",
		Buckets: []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5},
	}, []string{"source"})
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

// PublishBuckets are the buckets of a source's publish_seconds, Caddy's own
// share of a change's propagation: from 10 µs to 1 s.
var PublishBuckets = []float64{0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.1, 1}

// NewConnectionHistogram returns a source's histogram of seconds by
// connection (the label "connection", as Link's series have it), which
// RegisterMetrics registers (see AddCollector).
func NewConnectionHistogram(name, help string, buckets []float64) *prometheus.HistogramVec {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, []string{"connection"})
	AddCollector(h)
	return h
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
		serviceCollector{},
		connectedGauge, reconnectsTotal, watchRestartsTotal,
		watched, lookups, evictions, firstAnswerSeconds,
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

// series is the metrics of one source and service, fed by every registered
// cell with that pair. Its fields are guarded by index.mu.
type series struct {
	source, service string
	cells           []*Cell
	backends        int              // distinct addresses of the cells
	updates         uint64           // backend changes applied
	problems        [numKinds]uint64 // problems begun, by kind
	lastUpdate      float64          // unix seconds of the last update; 0: none yet
}

// serviceCollector reports the live series (seriesByName) at each scrape.
type serviceCollector struct{}

// Describe sends the descriptors of the per-service metrics.
func (serviceCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{backendsDesc, updatesDesc, problemsDesc, lastUpdateDesc} {
		ch <- d
	}
}

// Collect sends each live series' metrics: a copy taken under index.mu,
// sent without it.
func (serviceCollector) Collect(ch chan<- prometheus.Metric) {
	index.mu.Lock()
	rows := make([]series, 0, len(seriesByName))
	for _, s := range seriesByName {
		rows = append(rows, *s)
	}
	index.mu.Unlock()
	for _, s := range rows {
		ch <- prometheus.MustNewConstMetric(backendsDesc, prometheus.GaugeValue, float64(s.backends), s.source, s.service)
		ch <- prometheus.MustNewConstMetric(updatesDesc, prometheus.CounterValue, float64(s.updates), s.source, s.service)
		for k := range numKinds {
			// present from the start, so that the first problem is an increase
			ch <- prometheus.MustNewConstMetric(problemsDesc, prometheus.CounterValue, float64(s.problems[k]), s.source, s.service, k.String())
		}
		if s.lastUpdate != 0 {
			ch <- prometheus.MustNewConstMetric(lastUpdateDesc, prometheus.GaugeValue, s.lastUpdate, s.source, s.service)
		}
	}
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
		s = &series{source: source, service: service}
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
		s.backends = s.backendCount()
		return
	}
	delete(seriesByName, [2]string{s.source, s.service})
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
				s.problems[k]++
			}
		}
	}
	if !sameBackends(old, now) && !slices.ContainsFunc(s.cells, func(x *Cell) bool {
		return x != c && sameBackends(x.Load(), now)
	}) {
		s.updates++
		s.lastUpdate = float64(now.at.UnixNano()) / 1e9
	}
	s.backends = s.backendCount()
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
