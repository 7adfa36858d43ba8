package eureka

import (
	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-discovery/caddy-discovery/upstreams"
)

// App holds named Eureka server connections that any number of `eureka`
// upstream sources refer to, so that connection settings are written once.
// Its module ID is `eureka`.
//
// A source without a `server` name uses the connection fields set in the
// source itself, if any; else the server named "default", if the app has
// one; else a Eureka server at http://127.0.0.1:8761/eureka without
// authentication.
//
// Sources that end up with the same connection share one copy of the
// registry and one poller, kept across config reloads and stopped when the
// last source using it is unloaded.
type App struct{ upstreams.ServerApp[Server] }

// CaddyModule returns the Caddy module information.
func (*App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "eureka", New: func() caddy.Module { return new(App) }}
}
