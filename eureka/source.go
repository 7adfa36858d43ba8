package eureka

import (
	"errors"
	"fmt"
	"maps"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"go.uber.org/zap"

	"github.com/caddy-discovery/caddy-discovery/upstreams"
)

func init() {
	caddy.RegisterModule(EurekaUpstreams{})
	caddy.RegisterModule(new(App))
}

// EurekaUpstreams provides upstreams from a Eureka application: the IP
// addresses and ports of its instances whose status is UP, optionally only
// those with some metadata.
//
// Eureka is pull-based: Caddy keeps a copy of the registry, fetched once and
// then kept current with the server's deltas every refresh_interval (and
// fetched whole again when the delta's hash code does not match the copy,
// as Eureka's own clients do). The copy, and the polling, are shared by
// every site that reads the same servers with the same settings, and kept
// across config reloads. Upstreams are served from memory, so a request
// never waits for Eureka; they are sorted by IP address, then port.
//
// Until the first answer has arrived, and whenever the application has no
// usable instance, it returns an error saying why, so that reverse_proxy
// falls back to its static upstreams, if any. While the servers cannot be
// read, the last known instances keep being used.
type EurekaUpstreams struct {
	// The application's name, as instances register it (Spring's
	// spring.application.name); matched without regard to case, as Eureka
	// does. Required.
	App string `json:"app,omitempty"`

	// Use each instance's securePort (where it is enabled) instead of its
	// port (where that is enabled); the site then proxies over TLS (set
	// `transport http { tls }`). Default: false, the port.
	SecurePort bool `json:"secure_port,omitempty"`

	// Only instances whose metadata has all of these keys with these
	// values are used. Default: no condition.
	Metadata map[string]string `json:"metadata,omitempty"`

	// The name of a server defined in the `eureka` app. Default: the
	// connection fields below, if any are set; else the server named
	// "default", if the app defines one; else a Eureka server at
	// http://127.0.0.1:8761/eureka.
	ServerName string `json:"server,omitempty"`

	// A connection of its own, when no `server` is named: see the `eureka`
	// app's servers for the fields.
	Server

	// With an application chosen per request (request placeholders in
	// `app`, such as {re.app.1}): the names allowed and the bounds.
	upstreams.PerRequest

	upstreams.Source
	feed *feed // the poller the source reads
}

// CaddyModule returns the Caddy module information.
func (EurekaUpstreams) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.reverse_proxy.upstreams.eureka",
		New: func() caddy.Module { return new(EurekaUpstreams) },
	}
}

// Provision checks the configuration and joins (or creates) the poller of
// the servers. It reads the CA file but makes no request to Eureka: the
// eureka app starts polling when the config starts (which `caddy validate`
// never does).
func (u *EurekaUpstreams) Provision(ctx caddy.Context) error {
	app, err := upstreams.Open[*App](ctx, "eureka")
	if err != nil {
		return err
	}
	return u.provision(ctx.Logger(), app)
}

func (u *EurekaUpstreams) provision(log *zap.Logger, app *App) error {
	name, err := u.PerRequest.Reference(caddy.NewReplacer(), u.App)
	if err != nil {
		return err
	}
	sel, err := u.selection()
	if err != nil {
		return err
	}
	serverName, srv, err := servers.Resolve(app.Servers, u.ServerName, u.Server)
	if err != nil {
		return err
	}
	f, err := acquireFeed(&u.Source, serverName, srv)
	if err != nil {
		return servers.In(serverName, err)
	}
	u.feed = f
	app.Add(f.start)
	// open follows the application name in the feed's copy of the registry
	// through src: the source's own, or one chosen per request. The feed
	// already reads every application: there is nothing more to start.
	open := func(src *upstreams.Source, name string) (func(), error) {
		if err := checkAppName(name); err != nil {
			return nil, err
		}
		a, err := acquireApplication(src, f, feedKey(serverName, srv), name)
		if err != nil {
			return nil, err
		}
		v := &view{sel: sel, where: f.where, app: strings.ToUpper(name), pub: src.Publish(log, "eureka", upstreams.Named(strings.ToUpper(name), sel.String()))}
		a.fan.Join(src, v)
		return func() {}, nil
	}
	return u.Serve(&app.Starts, "eureka", name, u.PerRequest, checkAppName, open)
}

// Validate checks the configuration as written: every field, except that
// values with placeholders are checked once Provision has replaced them. It
// runs at adapt time (UnmarshalCaddyfile) and after Provision, and reads no
// file.
func (u *EurekaUpstreams) Validate() error {
	if !strings.Contains(u.App, "{") {
		if err := checkAppName(u.App); err != nil {
			return err
		}
	}
	if _, err := u.PerRequest.Reference(nil, u.App); err != nil {
		return err
	}
	if _, err := u.selection(); err != nil {
		return err
	}
	if err := servers.CheckSource(u.ServerName, u.Server); err != nil {
		return err
	}
	return u.Server.Validate()
}

// checkAppName checks an application name (placeholders replaced).
func checkAppName(name string) error {
	switch {
	case name == "":
		return errors.New("app: required; name the Eureka application, e.g. dynamic eureka ORDERS")
	case strings.ContainsFunc(name, func(r rune) bool { return r <= ' ' || r == '/' || r == '?' || r == '#' || r == 0x7f }):
		return fmt.Errorf("app: %q holds spaces, control characters or URL delimiters; give the application's name as instances register it", name)
	}
	return nil
}

// selection checks what to select from the application's instances.
func (u *EurekaUpstreams) selection() (selection, error) {
	for k := range u.Metadata {
		if k == "" {
			return selection{}, errors.New("metadata: empty key")
		}
	}
	return selection{secure: u.SecurePort, metadata: maps.Clone(u.Metadata)}, nil
}

// Interface guards
var (
	_ caddy.App                   = (*App)(nil)
	_ caddy.Provisioner           = (*EurekaUpstreams)(nil)
	_ caddy.Validator             = (*EurekaUpstreams)(nil)
	_ caddy.CleanerUpper          = (*EurekaUpstreams)(nil)
	_ reverseproxy.UpstreamSource = (*EurekaUpstreams)(nil)
)
