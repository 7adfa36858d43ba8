package consul

import (
	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-discovery/caddy-discovery/upstreams"
)

// App holds named Consul connections that any number of `consul` upstream
// sources refer to, so that addresses, token and TLS settings are written
// once. Its module ID is `consul`.
//
// A source without a `server` name uses the server named "default" if there
// is one, else the connection fields set in the source itself, else the
// local Consul agent at 127.0.0.1:8500 without a token.
//
// Sources that end up with the same connection share one client (one
// connection pool), and sources that ask the same question through it share
// one long-poll; both are kept across config reloads and stopped when the
// last source using them is unloaded.
type App struct {
	// Named server connections, e.g. "default", "dc2". A source with
	// `server dc2` uses the one named "dc2".
	Servers map[string]*Server `json:"servers,omitempty"`

	upstreams.Starts
}

var servers = upstreams.Connections[Server]{App: "consul", Kind: "server", Field: "server", Named: "consul server %q"}

// CaddyModule returns the Caddy module information.
func (*App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "consul", New: func() caddy.Module { return new(App) }}
}

// Provision checks the servers.
func (a *App) Provision(caddy.Context) error { return servers.Check(a.Servers) }

// Interface guards
var (
	_ caddy.App         = (*App)(nil)
	_ caddy.Provisioner = (*App)(nil)
)
