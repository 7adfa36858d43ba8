package consul

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/caddy-discovery/caddy-discovery/upstreams"
)

// publishSeconds is Caddy's own share of a Consul change's propagation: from
// a blocking query's answer (decoded) to every source of the service having
// published it. Consul's side (its index moving, the answer's round trip)
// comes before it; the one extra query that explains an empty list is left
// out too.
var publishSeconds = upstreams.NewConnectionHistogram("caddy_discovery_consul_publish_seconds",
	"Time from a Consul blocking query's answer to Caddy publishing the new upstreams of every source of the service.",
	upstreams.PublishBuckets)

// longPolls counts the running long-polls by connection: one per query
// however many sites and configs share it.
var longPolls = prometheus.NewGaugeVec(prometheus.GaugeOpts{
	Name: "caddy_discovery_consul_long_polls",
	Help: "Blocking queries Caddy keeps running against Consul, one per service, datacenter, tags, filter, namespace, partition and token, however many sites and loaded configs use it.",
}, []string{"connection"})

func init() {
	upstreams.AddCollector(longPolls)
}

var running = struct {
	sync.Mutex
	by map[string]int
}{by: make(map[string]int)}

// pollRunning counts a long-poll of connection conn in (+1) or out (-1); the
// connection's label goes once it has none.
func pollRunning(conn string, delta int) {
	running.Lock()
	defer running.Unlock()
	n := running.by[conn] + delta
	if n <= 0 {
		delete(running.by, conn)
		longPolls.DeleteLabelValues(conn)
		return
	}
	running.by[conn] = n
	longPolls.WithLabelValues(conn).Set(float64(n))
}
