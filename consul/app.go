package consul

import (
	"fmt"

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
// Sources that end up with the same addresses, TLS settings and token share
// one client (one connection pool), and sources that ask the same question
// through it share one long-poll; both are kept across config reloads and
// stopped when the last source using them is unloaded.
type App struct {
	// Named server connections, e.g. "default", "dc2". A source with
	// `server dc2` uses the one named "dc2".
	Servers map[string]*Server `json:"servers,omitempty"`

	starts upstreams.Starts
}

// CaddyModule returns the Caddy module information.
func (*App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "consul",
		New: func() caddy.Module { return new(App) },
	}
}

// Provision checks the servers.
func (a *App) Provision(caddy.Context) error {
	return upstreams.CheckNamed("server", "empty server", a.Servers)
}

// endpoint resolves the connection of a source: the server of the app named
// name, or ("") the source's own connection fields, or the app's default
// server, or the local agent; with placeholders replaced and files read.
// It returns the server's name in the app ("" for none) too.
func (a *App) endpoint(name string, inline Server) (string, endpoint, error) {
	name, srv, ok := upstreams.Pick(a.Servers, name, inline, inline.connectionSet())
	if !ok {
		return "", endpoint{}, fmt.Errorf("server: %q is not defined in the consul app; defined servers: %v", name, upstreams.Defined(a.Servers))
	}
	srv, err := srv.expand(caddy.NewReplacer())
	if err != nil {
		return "", endpoint{}, inServer(name, err)
	}
	if err := srv.Validate(); err != nil {
		return "", endpoint{}, inServer(name, err)
	}
	e, err := srv.endpoint()
	if err != nil {
		return "", endpoint{}, inServer(name, err)
	}
	return name, e, nil
}

// inServer says which server of the consul app an error concerns; an error
// of the source's own connection fields names the field alone.
func inServer(name string, err error) error {
	if name == "" {
		return err
	}
	return fmt.Errorf("consul server %q: %w", name, err)
}

// track remembers the clients and long-polls that the sources of this
// config use, so that Start can start them.
func (a *App) track(c *client, w *watch) { a.starts.Add(c.start, w.start) }

// Start starts the clients and long-polls of this config's sources in the
// background; it does not wait for Consul. Those already running for the
// previous config go on as they are.
func (a *App) Start() error {
	a.starts.Start()
	return nil
}

// Stop does nothing: clients and long-polls stop when their last upstream
// source is cleaned up, which lets a reload keep them.
func (a *App) Stop() error { return nil }

// Interface guards
var (
	_ caddy.App         = (*App)(nil)
	_ caddy.Provisioner = (*App)(nil)
)
