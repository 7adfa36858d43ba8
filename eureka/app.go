package eureka

import (
	"fmt"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-discovery/caddy-discovery/upstreams"
)

// App holds named Eureka server connections that any number of `eureka`
// upstream sources refer to, so that connection settings are written once.
// Its module ID is `eureka`.
//
// A source without a `server` name uses the server named "default" if there
// is one, else the connection fields set in the source itself, else a Eureka
// server at http://127.0.0.1:8761/eureka without authentication.
//
// Sources that end up with the same URLs, credentials and timings share one
// copy of the registry and one poller, kept across config reloads and
// stopped when the last source using it is unloaded.
type App struct {
	// Named server connections, e.g. "default", "prod". A source with
	// `server prod` uses the one named "prod".
	Servers map[string]*Server `json:"servers,omitempty"`

	starts upstreams.Starts
}

// CaddyModule returns the Caddy module information.
func (*App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "eureka",
		New: func() caddy.Module { return new(App) },
	}
}

// Provision checks the servers.
func (a *App) Provision(caddy.Context) error {
	return upstreams.CheckNamed("server", "empty server", a.Servers)
}

// server resolves the server for a name ("" for the default) and the
// source's own connection fields, with placeholders replaced. name is the
// server's name in the app, or "" for the source's own fields (or the
// default URL when it sets none).
func (a *App) server(name string, inline Server) (string, Server, error) {
	name, srv, ok := upstreams.Pick(a.Servers, name, inline, inline.connectionSet())
	if !ok {
		return "", srv, fmt.Errorf("server: %q is not defined in the eureka app; define it in the global eureka option (server %s { urls … }) or remove the name", name, name)
	}
	srv, err := srv.expand(caddy.NewReplacer())
	if err != nil {
		return "", srv, inServer(name, err)
	}
	if err := srv.Validate(); err != nil {
		return "", srv, inServer(name, err)
	}
	return name, srv, nil
}

// inServer says which server of the eureka app an error concerns; an error
// of the source's own connection fields names the field alone, as errors of
// its other fields do.
func inServer(name string, err error) error {
	if name == "" {
		return err
	}
	return fmt.Errorf("eureka server %q: %w", name, err)
}

// track remembers the feeds that the sources of this config use, so that
// Start can start them.
func (a *App) track(f *feed) { a.starts.Add(f.start) }

// Start starts polling for this config's sources in the background; it does
// not wait for any server. Feeds already running for the previous config go
// on as they are.
func (a *App) Start() error {
	a.starts.Start()
	return nil
}

// Stop does nothing: feeds stop when their last upstream source is cleaned
// up, which lets a reload keep them.
func (a *App) Stop() error { return nil }

// Interface guards
var (
	_ caddy.App         = (*App)(nil)
	_ caddy.Provisioner = (*App)(nil)
)
