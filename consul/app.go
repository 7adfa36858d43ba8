package consul

import (
	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-discovery/caddy-discovery/upstreams"
)

// App holds named Consul connections that any number of `consul` upstream
// sources refer to, so that addresses, token and TLS settings are written
// once. Its module ID is `consul`.
//
// A source without a `server` name uses the connection fields set in the
// source itself, if any; else the server named "default", if the app has
// one; else the local Consul agent at 127.0.0.1:8500 without a token.
//
// Sources that end up with the same connection share one client (one
// connection pool), and sources that ask the same question through it share
// one long-poll; both are kept across config reloads and stopped when the
// last source using them is unloaded.
type App struct{ upstreams.ServerApp[Server] }

// CaddyModule returns the Caddy module information.
func (*App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "consul", New: func() caddy.Module { return new(App) }}
}
