package nacos

import (
	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-discovery/caddy-discovery/upstreams"
)

// App holds named Nacos server connections that any number of `nacos`
// upstream sources refer to, so that connection settings are written once.
// Its module ID is `nacos`.
//
// A source without a `server` name uses the connection fields set in the
// source itself, if any; else the server named "default", if the app has
// one; else a Nacos server at 127.0.0.1:8848 without authentication.
//
// Sources that end up with the same connection and namespace share one
// naming client (one gRPC connection), and sources that reference the same
// service through it share one subscription; both are kept across config
// reloads and closed when the last source using them is unloaded.
type App struct{ upstreams.ServerApp[Server] }

// CaddyModule returns the Caddy module information.
func (*App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "nacos", New: func() caddy.Module { return new(App) }}
}
