package zookeeper

import (
	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-discovery/caddy-discovery/upstreams"
)

// App holds named ZooKeeper connections that any number of `zookeeper`
// upstream sources refer to, so that servers and credentials are written
// once. Its module ID is `zookeeper`.
//
// A source without a `server` name uses the connection fields set in the
// source itself, if any; else the server named "default", if the app has
// one; else ZooKeeper at 127.0.0.1:2181 without authentication.
//
// Sources that end up with the same connection share one ZooKeeper session,
// and sources that read the same path through it share one set of watches;
// both are kept across config reloads and closed when the last source using
// them is unloaded.
type App struct{ upstreams.ServerApp[Server] }

// CaddyModule returns the Caddy module information.
func (*App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "zookeeper", New: func() caddy.Module { return new(App) }}
}
