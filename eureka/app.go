package eureka

import (
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-discovery/caddy-discovery/upstreams"
)

// defaultServer is the name of the server that sources without a server name
// and without connection fields of their own use, if the app defines it.
const defaultServer = "default"

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

	mu    sync.Mutex
	feeds []*feed
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
	for _, name := range slices.Sorted(maps.Keys(a.Servers)) {
		if err := upstreams.CheckName("server", name); err != nil {
			return fmt.Errorf("servers: %w", err)
		}
		s := a.Servers[name]
		if s == nil {
			return fmt.Errorf("servers: %s: empty server", name)
		}
		if err := s.Validate(); err != nil {
			return fmt.Errorf("servers: %s: %w", name, err)
		}
	}
	return nil
}

// server resolves the server for a name ("" for the default) and the
// source's own connection fields, with placeholders replaced. name is the
// server's name in the app, or "" for the source's own fields (or the
// default URL when it sets none).
func (a *App) server(name string, inline Server) (string, Server, error) {
	var srv Server
	switch {
	case name != "":
		s, ok := a.Servers[name]
		if !ok || s == nil {
			return "", srv, fmt.Errorf("server: %q is not defined in the eureka app; define it in the global eureka option (server %s { urls … }) or remove the name", name, name)
		}
		srv = *s
	case inline.connectionSet():
		srv = inline
	default:
		if s, ok := a.Servers[defaultServer]; ok && s != nil {
			name, srv = defaultServer, *s
		}
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
func (a *App) track(f *feed) {
	a.mu.Lock()
	a.feeds = append(a.feeds, f)
	a.mu.Unlock()
}

// Start starts polling for this config's sources in the background; it does
// not wait for any server. Feeds already running for the previous config go
// on as they are.
func (a *App) Start() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, f := range a.feeds {
		f.start()
	}
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
