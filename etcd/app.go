package etcd

import (
	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-discovery/caddy-discovery/upstreams"
)

// App holds named etcd connections that any number of `etcd` upstream
// sources refer to, so that endpoints, credentials and TLS settings are
// written once. Its module ID is `etcd`.
//
// A source without a `server` name uses the connection fields set in the
// source itself, if any; else the server named "default", if the app has
// one; else etcd at 127.0.0.1:2379 without authentication.
//
// Sources that end up with the same connection share one client (one gRPC
// connection), and sources that read the same key prefix through it share
// one watch; both are kept across config reloads and stopped when the last
// source using them is unloaded.
type App struct{ upstreams.ServerApp[Server] }

// CaddyModule returns the Caddy module information.
func (*App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "etcd", New: func() caddy.Module { return new(App) }}
}
