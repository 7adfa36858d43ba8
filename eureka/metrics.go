package eureka

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/caddy-discovery/caddy-discovery/upstreams"
)

// fetchesTotal counts the requests of the pollers by connection: one
// poller per connection, however many sites and loaded configs read it, so
// that deltas grow by one per refresh_interval and full fetches only at the
// start and when the copy has to be repaired (a hash code mismatch, a
// refused delta). More means more pollers than connections, or a copy that
// keeps going wrong.
var fetchesTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "caddy_discovery_eureka_fetches_total",
	Help: "Requests Caddy made to Eureka servers, by connection, kind (full: GET /apps, the whole registry; delta: GET /apps/delta) and result (ok or error). One poller per connection however many sites and configs use it: deltas grow by one per refresh_interval.",
}, []string{"connection", "kind", "result"})

func init() {
	upstreams.AddCollector(fetchesTotal)
}

// countFetch counts a poller's request of connection conn.
func countFetch(conn string, full bool, err error) {
	kind, result := "delta", "ok"
	if full {
		kind = "full"
	}
	if err != nil {
		result = "error"
	}
	fetchesTotal.WithLabelValues(conn, kind, result).Inc()
}
