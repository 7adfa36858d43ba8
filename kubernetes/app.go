package kubernetes

import (
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-discovery/caddy-discovery/upstreams"
)

// defaultCluster is the name of the cluster that references without a
// cluster name use, and of the implicit connection.
const defaultCluster = "default"

// App holds named Kubernetes cluster connections that any number of
// `k8s` upstream sources refer to, so that connection settings are written
// once. Its module ID is `k8s`.
//
// A Service reference without a cluster name uses the cluster named
// "default" if there is one, else the connection set in the upstream source
// itself, else the in-cluster service account or kubectl's kubeconfig.
type App struct {
	// Named cluster connections, e.g. "default", "eu-west". A reference
	// `eu-west/shop/web:http` uses the one named "eu-west".
	Clusters map[string]*Connection `json:"clusters,omitempty"`

	mu   sync.Mutex
	sets []*informerSet
}

// CaddyModule returns the Caddy module information.
func (*App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "k8s",
		New: func() caddy.Module { return new(App) },
	}
}

// Provision checks the cluster names and connection fields.
func (a *App) Provision(caddy.Context) error {
	for name, c := range a.Clusters {
		if err := upstreams.CheckName("cluster", name); err != nil {
			return fmt.Errorf("clusters: %w", err)
		}
		if c == nil {
			return fmt.Errorf("clusters: %s: empty connection", name)
		}
		// Checked here too, so that `caddy validate` also refuses a cluster
		// no source uses yet; placeholders are checked once replaced.
		if err := c.Validate(); err != nil {
			return fmt.Errorf("clusters: %s: %w", name, err)
		}
	}
	return nil
}

// connection resolves the connection for a cluster name ("" for the default)
// and the source's own connection fields, with placeholders replaced.
func (a *App) connection(name string, inline Connection) (string, Connection, error) {
	var conn Connection
	switch c, ok := a.Clusters[name]; {
	case name != "" && !ok:
		return "", conn, fmt.Errorf("cluster %q is not defined in the k8s app; defined clusters: %v", name, slices.Sorted(maps.Keys(a.Clusters)))
	case name != "":
		conn = *c
	case !inline.IsZero():
		name, conn = defaultCluster, inline
	default:
		name = defaultCluster
		if c, ok := a.Clusters[defaultCluster]; ok {
			conn = *c
		}
	}
	conn, err := conn.expand(caddy.NewReplacer())
	if err != nil {
		return "", conn, fmt.Errorf("cluster %q: %w", name, err)
	}
	if err := conn.Validate(); err != nil {
		return "", conn, fmt.Errorf("cluster %q: %w", name, err)
	}
	return name, conn, nil
}

// track remembers informer sets that the sources of this config use, so that
// Start can start them.
func (a *App) track(sets ...*informerSet) {
	a.mu.Lock()
	a.sets = append(a.sets, sets...)
	a.mu.Unlock()
}

// Start starts the watches of this config's sources. Those already running
// for the previous config go on as they are.
func (a *App) Start() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, s := range a.sets {
		s.start()
	}
	return nil
}

// Stop does nothing: watches stop when their last upstream source is
// cleaned up, which lets a reload keep them.
func (a *App) Stop() error { return nil }

// Interface guards
var (
	_ caddy.App         = (*App)(nil)
	_ caddy.Provisioner = (*App)(nil)
)
