package upstreams

import (
	"cmp"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
)

func init() {
	caddy.RegisterModule(adminDump{})
}

// The live sources, for the admin dump.
var (
	liveMu sync.Mutex
	live   = make(map[*Cell]liveSource)
)

type liveSource struct {
	source, service string
}

// Register lists a source's cell in the admin API's /discovery/upstreams
// dump, as source (e.g. "k8s") and service (its reference, as written in the
// config), publishes its targets' weights to weighted selection policies
// (see LookupWeight) and feeds the service's metrics (labels source and
// service; see RegisterMetrics), until the returned function is called. A
// cell is registered at most once at a time.
//
// On a config reload, the new config's sources register before the old
// config's unregister: an address both list keeps its weight throughout,
// and the service's metrics go on without counting anything twice.
func Register(source, service string, c *Cell) (unregister func()) {
	liveMu.Lock()
	live[c] = liveSource{source: source, service: service}
	liveMu.Unlock()
	index.mu.Lock()
	c.registered = true
	publishWeights(c, nil, c.Load())
	joinSeries(c, source, service)
	index.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			index.mu.Lock()
			c.registered = false
			publishWeights(c, c.Load(), nil)
			leaveSeries(c)
			index.mu.Unlock()
			liveMu.Lock()
			delete(live, c)
			liveMu.Unlock()
		})
	}
}

// DumpEntry is one source's current view in the admin dump.
type DumpEntry struct {
	Source    string       `json:"source"`
	Service   string       `json:"service"`
	Upstreams []DumpTarget `json:"upstreams"`
	Error     string       `json:"error,omitempty"`
	Updated   time.Time    `json:"updated,omitzero"`
}

// DumpTarget is one upstream of a DumpEntry.
type DumpTarget struct {
	Dial   string  `json:"dial"`
	Weight float64 `json:"weight"`
}

// Dump lists every live source's current snapshot, sorted by source and
// service. Sources of a config being replaced by a reload are listed too,
// until it is cleaned up.
func Dump() []DumpEntry {
	liveMu.Lock()
	entries := make([]DumpEntry, 0, len(live))
	for c, ls := range live {
		e := DumpEntry{Source: ls.source, Service: ls.service, Upstreams: []DumpTarget{}}
		if s := c.Load(); s != nil {
			for i, d := range s.dials {
				e.Upstreams = append(e.Upstreams, DumpTarget{Dial: d, Weight: s.weights[i]})
			}
			if s.err != nil {
				e.Error = s.err.Error()
			}
			e.Updated = s.at
		}
		entries = append(entries, e)
	}
	liveMu.Unlock()
	slices.SortFunc(entries, func(a, b DumpEntry) int {
		return cmp.Or(cmp.Compare(a.Source, b.Source), cmp.Compare(a.Service, b.Service), a.Updated.Compare(b.Updated))
	})
	return entries
}

// adminDump serves GET /discovery/upstreams on Caddy's admin API: what every
// registry source currently proxies to, with weights and its latest problem.
// Provisioned with every config that starts the admin endpoint, it also
// registers the discovery metrics in that config's registry, the one the
// admin API's /metrics serves.
type adminDump struct{}

// CaddyModule returns the Caddy module information.
func (adminDump) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.discovery",
		New: func() caddy.Module { return new(adminDump) },
	}
}

// Provision registers the discovery metrics in the config's registry.
func (adminDump) Provision(ctx caddy.Context) error {
	return RegisterMetrics(ctx.GetMetricsRegistry())
}

// Routes returns the route of the /discovery/upstreams endpoint.
func (adminDump) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{{Pattern: "/discovery/upstreams", Handler: caddy.AdminHandlerFunc(serveDump)}}
}

func serveDump(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: fmt.Errorf("method %s not allowed; use GET", r.Method)}
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(Dump())
}

// Interface guards
var (
	_ caddy.AdminRouter = adminDump{}
	_ caddy.Provisioner = adminDump{}
)
