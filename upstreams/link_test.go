// Tests of the per-connection metrics fed through Link.

package upstreams

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// testPropagation is a source's own propagation histogram, added once
// (as a source's package adds its collectors), so that the test can run
// again in one process (-count).
var testPropagation = func() *prometheus.HistogramVec {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "caddy_discovery_test_propagation_seconds", Help: "test", Buckets: []float64{0.1, 1},
	}, []string{"connection"})
	AddCollector(h)
	return h
}()

func TestConnectionMetrics(t *testing.T) {
	hist := testPropagation
	reg := registry(t)
	conn := []string{"source", "test", "connection", "east"}

	ns1 := NewLink("test", "east", hist)
	expect(t, reg, 0, "caddy_discovery_connected", conn...)
	expect(t, reg, 0, "caddy_discovery_reconnects_total", conn...)
	expect(t, reg, 0, "caddy_discovery_watch_restarts_total", conn...)
	ns1.SetConnected(true)
	expect(t, reg, 1, "caddy_discovery_connected", conn...)

	// A second namespace's watches join; until they work, the connection
	// is not fully connected, but their first success is no reconnect.
	ns2 := NewLink("test", "east", hist)
	expect(t, reg, 0, "caddy_discovery_connected", conn...)
	ns2.SetConnected(true)
	expect(t, reg, 1, "caddy_discovery_connected", conn...)
	expect(t, reg, 0, "caddy_discovery_reconnects_total", conn...)

	// The server restarts: both lose it, both come back: one reconnect.
	ns1.SetConnected(false)
	ns2.SetConnected(false)
	ns2.SetConnected(false) // reported again by a retry
	expect(t, reg, 0, "caddy_discovery_connected", conn...)
	ns1.SetConnected(true)
	expect(t, reg, 0, "caddy_discovery_reconnects_total", conn...)
	ns2.SetConnected(true)
	expect(t, reg, 1, "caddy_discovery_connected", conn...)
	expect(t, reg, 1, "caddy_discovery_reconnects_total", conn...)
	ns1.WatchRestarted()
	ns2.WatchRestarted()
	expect(t, reg, 2, "caddy_discovery_watch_restarts_total", conn...)

	ns1.Observe(50 * time.Millisecond)
	ns2.Observe(-time.Second) // clock skew: counts as 0
	expect(t, reg, 2, "caddy_discovery_test_propagation_seconds", "connection", "east")

	// A link that was lost and is closed is no reconnect.
	ns2.SetConnected(false)
	ns2.Close()
	ns2.Close()
	expect(t, reg, 1, "caddy_discovery_connected", conn...)
	expect(t, reg, 1, "caddy_discovery_reconnects_total", conn...)
	ns2.SetConnected(true) // after Close: ignored
	ns1.Close()
	for _, name := range []string{"caddy_discovery_connected", "caddy_discovery_reconnects_total", "caddy_discovery_watch_restarts_total"} {
		expectAbsent(t, reg, name, conn...)
	}
	expectAbsent(t, reg, "caddy_discovery_test_propagation_seconds", "connection", "east")

	// A link refused from the start never connects: 0, and no reconnect.
	refused := NewLink("test", "refused", nil)
	refused.SetConnected(false)
	refused.Observe(time.Second) // no histogram: ignored
	expect(t, reg, 0, "caddy_discovery_connected", "source", "test", "connection", "refused")
	refused.Close()
}
