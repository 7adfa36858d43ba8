package kubernetes

import (
	"fmt"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-discovery/caddy-discovery/upstreams"
)

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

	starts upstreams.Starts
}

// CaddyModule returns the Caddy module information.
func (*App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "k8s",
		New: func() caddy.Module { return new(App) },
	}
}

// Provision checks the cluster names and connection fields. Connections
// are checked here too, so that `caddy validate` also refuses a cluster no
// source uses yet; placeholders are checked once replaced.
func (a *App) Provision(caddy.Context) error {
	return upstreams.CheckNamed("cluster", "empty connection", a.Clusters)
}

// connection resolves the connection for a cluster name ("" for the default)
// and the source's own connection fields, with placeholders replaced.
func (a *App) connection(name string, inline Connection) (string, Connection, error) {
	name, conn, ok := upstreams.Pick(a.Clusters, name, inline, !inline.IsZero())
	if !ok {
		return "", conn, fmt.Errorf("cluster %q is not defined in the k8s app; defined clusters: %v", name, upstreams.Defined(a.Clusters))
	}
	if name == "" { // the source's own connection, or the built-in one
		name = upstreams.DefaultName
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
	for _, s := range sets {
		a.starts.Add(s.start)
	}
}

// Start starts the watches of this config's sources. Those already running
// for the previous config go on as they are.
func (a *App) Start() error {
	a.starts.Start()
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
