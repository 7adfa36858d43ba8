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
// A Service reference without a cluster name uses the connection set in the
// upstream source itself, if any; else the cluster named "default", if the
// app has one; else the in-cluster service account or kubectl's kubeconfig.
//
// Sources that end up with the same cluster and connection share one set of
// watches per namespace (and one of the Nodes); they are kept across config
// reloads and stopped when the last source using them is unloaded.
type App struct {
	// Named cluster connections, e.g. "default", "eu-west". A reference
	// `eu-west/shop/web:http` uses the one named "eu-west".
	Clusters map[string]*Connection `json:"clusters,omitempty"`

	upstreams.Starts
}

// clusters are the k8s app's named connections. A reference names its
// cluster (cluster/namespace/name), so an undefined one is reported as
// `cluster "west" is not defined`.
var clusters = upstreams.Connections[Connection]{App: "k8s", Kind: "cluster", Named: "cluster %q"}

// CaddyModule returns the Caddy module information.
func (*App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "k8s", New: func() caddy.Module { return new(App) }}
}

// Provision checks the cluster names and connection fields. Connections
// are checked here too, so that `caddy validate` also refuses a cluster no
// source uses yet; placeholders are checked once replaced.
func (a *App) Provision(ctx caddy.Context) error {
	if err := clusters.Check(a.Clusters); err != nil {
		return err
	}
	for name, c := range a.Clusters {
		c.warnFormerNames(ctx.Logger(), fmt.Sprintf("cluster %q", name))
	}
	return nil
}

// Interface guards
var (
	_ caddy.App         = (*App)(nil)
	_ caddy.Provisioner = (*App)(nil)
)
