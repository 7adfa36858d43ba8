// Per-connection metrics: Link, a source's handle on one watch set or
// client of a named connection, and the series that a connection's links
// share (connected, reconnects, watch restarts, and the source's own
// propagation histogram). The collectors are defined and registered in
// metrics.go.

package upstreams

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

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
