// Package zookeeper provides the http.reverse_proxy.upstreams.zookeeper
// upstream source, fed by the instances that registrars (Curator service
// discovery, which Spring Cloud Zookeeper and Dubbo 3 use, and Dubbo's
// interface-level registry) keep as ephemeral nodes in ZooKeeper, followed
// with ZooKeeper watches, and the zookeeper app that holds named server
// connections.
package zookeeper

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"unicode"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"go.uber.org/zap"

	"github.com/caddy-discovery/caddy-discovery/upstreams"
)

func init() {
	caddy.RegisterModule(ZooKeeperUpstreams{})
	caddy.RegisterModule(new(App))
}

// ZooKeeperUpstreams provides upstreams from the instances of a service that
// its registrar keeps in ZooKeeper: Curator service discovery (Spring Cloud
// Zookeeper, Dubbo 3 application-level discovery; the default) or Dubbo's
// interface-level providers. Each upstream keeps its instance's weight,
// where the format has one, for weighted selection policies.
//
// Caddy lists the service's node once, then follows it with ZooKeeper
// watches, armed again after each fires: a registration, a deregistration,
// a status change, or a registrar whose session ended (ZooKeeper deletes its
// ephemeral node) reaches Caddy within milliseconds. The watches are shared
// by every site that reads the same path through the same connection, and
// kept across config reloads; after the session expires, the path is listed
// again. Upstreams are served from memory, so a request never waits for
// ZooKeeper; they are sorted by IP address, then port.
//
// Until the first listing, and whenever the service has no usable
// instance, it returns an error saying why, so that reverse_proxy falls
// back to its static upstreams, if any. While ZooKeeper is unreachable, the
// last known instances keep being used.
type ZooKeeperUpstreams struct {
	// The service: Curator's service name (Spring's
	// spring.application.name), or with format dubbo the interface, e.g.
	// org.example.GreeterService. Required.
	Service string `json:"service,omitempty"`

	// How instances are written: `curator` (a ServiceInstance JSON per
	// node under <base_path>/<service>; Spring instances must have
	// metadata instance_status UP), `dubbo` (provider URLs under
	// <base_path>/<service>/providers) or `apisix` (Apache APISIX's
	// ZooKeeper discovery: a {"host","port","weight","metadata"} JSON per
	// node under <base_path>/<service>). Default: curator
	Format string `json:"format,omitempty"`

	// The path the registrars write under, with any chroot in front.
	// Default: /services (curator, Spring Cloud Zookeeper's root), /dubbo
	// (dubbo), /apisix/discovery/zk (apisix, APISIX's root_path)
	BasePath string `json:"base_path,omitempty"`

	// With format curator: use each instance's sslPort instead of its
	// port; the site then proxies over TLS (set `transport http { tls }`).
	// Default: false
	SSLPort bool `json:"ssl_port,omitempty"`

	// With format dubbo: the provider protocols to proxy to, ones that speak
	// HTTP. Default: ["tri", "rest"]
	Protocols []string `json:"protocols,omitempty"`

	// Only instances whose metadata has all of these keys with exactly
	// these values are used (curator: the payload's metadata; dubbo: the
	// URL's parameters, such as version or group; apisix: metadata).
	// Default: no condition.
	Metadata map[string]string `json:"metadata,omitempty"`

	// The name of a server defined in the `zookeeper` app. Default: the
	// connection fields below, if any are set; else the server named
	// "default", if the app defines one; else 127.0.0.1:2181 without
	// authentication.
	ServerName string `json:"server,omitempty"`

	// A connection of its own, when no `server` is named: see the
	// `zookeeper` app's servers for the fields.
	Server

	// With a service chosen per request (request placeholders in
	// `service`, such as {re.svc.1}): the names allowed and the bounds.
	upstreams.PerRequest

	upstreams.Source
}

// CaddyModule returns the Caddy module information.
func (ZooKeeperUpstreams) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.reverse_proxy.upstreams.zookeeper",
		New: func() caddy.Module { return new(ZooKeeperUpstreams) },
	}
}

// Provision checks the configuration and joins (or creates) the session and
// the watch. It makes no request to ZooKeeper: the zookeeper app starts them
// when the config starts (which `caddy validate` never does).
func (u *ZooKeeperUpstreams) Provision(ctx caddy.Context) error {
	app, err := upstreams.Open[*App](ctx, "zookeeper")
	if err != nil {
		return err
	}
	return u.provision(ctx.Logger(), app)
}

func (u *ZooKeeperUpstreams) provision(log *zap.Logger, app *App) error {
	repl := caddy.NewReplacer()
	service, err := u.PerRequest.Reference(repl, u.Service)
	if err != nil {
		return err
	}
	name, srv, err := servers.Resolve(app.Servers, u.ServerName, u.Server)
	if err != nil {
		return err
	}
	st, err := srv.settings(name)
	if err != nil {
		return servers.In(name, err)
	}
	c, err := acquireClient(&u.Source, name, st)
	if err != nil {
		return err
	}
	app.Add(c.start)
	// open follows service's node through src: the source's own, or a
	// service chosen per request's.
	open := func(src *upstreams.Source, service string) (func(), error) {
		v, err := u.view(repl, service)
		if err != nil {
			return nil, err
		}
		w, err := acquireWatch(src, c, v.path)
		if err != nil {
			return nil, err
		}
		v.where, v.pub = st.where, src.Publish(log, "zookeeper", upstreams.Named(v.path, v.selection()))
		w.fan.Join(src, v)
		return w.start, nil
	}
	return u.Serve(&app.Starts, "zookeeper", service, u.PerRequest, checkName, open)
}

// Validate checks the configuration as written: every field, except that
// values with placeholders are checked once Provision has replaced them. It
// runs at adapt time (UnmarshalCaddyfile) and after Provision.
func (u *ZooKeeperUpstreams) Validate() error {
	if _, err := u.view(nil, u.Service); err != nil {
		return err
	}
	if _, err := u.PerRequest.Reference(nil, u.Service); err != nil {
		return err
	}
	if err := servers.CheckSource(u.ServerName, u.Server); err != nil {
		return err
	}
	return u.Server.Validate()
}

// view checks the fields that make the view of service (as written, or
// with its placeholders replaced) and replaces the placeholders in
// base_path; with a nil repl, or a service with placeholders, what has
// placeholders is not checked.
func (u *ZooKeeperUpstreams) view(repl *caddy.Replacer, service string) (*view, error) {
	v := &view{format: u.Format, sslPort: u.SSLPort, protocols: slices.Clone(u.Protocols), metadata: maps.Clone(u.Metadata)}
	if v.format == "" {
		v.format = formatCurator
	}
	switch {
	case !slices.Contains(formats, v.format):
		return nil, fmt.Errorf("format: unknown format %q; use %s", v.format, strings.Join(formats, ", "))
	case u.SSLPort && v.format != formatCurator:
		return nil, errors.New("ssl_port: only applies to format curator")
	case len(u.Protocols) > 0 && v.format != formatDubbo:
		return nil, errors.New("protocols: only apply to format dubbo")
	}
	if len(v.protocols) == 0 {
		v.protocols = []string{"tri", "rest"}
	}
	for k := range u.Metadata {
		if k == "" {
			return nil, errors.New("metadata: empty key")
		}
	}
	if !strings.Contains(service, "{") {
		if err := checkName(service); err != nil {
			return nil, err
		}
	}
	base, ok, err := upstreams.Expand(repl, u.BasePath)
	if err != nil {
		return nil, fmt.Errorf("base_path: %w", err)
	}
	if ok && base != "" {
		if err := checkBase(base); err != nil {
			return nil, err
		}
	}
	if base == "" {
		base = defaultBase(v.format)
	}
	v.path = path(v.format, base, service)
	return v, nil
}

// checkName checks a service name: one ZooKeeper path element.
func checkName(s string) error {
	switch {
	case s == "":
		return errors.New("service: required; name the service as its registrar does, e.g. dynamic zookeeper orders")
	case s == "." || s == ".." || strings.ContainsFunc(s, func(r rune) bool { return r == '/' || unicode.IsSpace(r) || unicode.IsControl(r) }):
		return fmt.Errorf("service: %q is not one ZooKeeper node name: no '/', spaces or control characters, not . or ..", s)
	}
	return nil
}

// checkBase checks a base path: absolute, without an empty, . or ..
// element.
func checkBase(s string) error {
	if !strings.HasPrefix(s, "/") || strings.ContainsFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) {
		return fmt.Errorf("base_path: %q is not an absolute ZooKeeper path such as /services", s)
	}
	for _, e := range strings.Split(strings.Trim(s, "/"), "/") {
		if e == "" && s != "/" || e == "." || e == ".." {
			return fmt.Errorf("base_path: %q has an empty, . or .. element", s)
		}
	}
	return nil
}

// Interface guards
var (
	_ caddy.App                   = (*App)(nil)
	_ caddy.Provisioner           = (*ZooKeeperUpstreams)(nil)
	_ caddy.Validator             = (*ZooKeeperUpstreams)(nil)
	_ caddy.CleanerUpper          = (*ZooKeeperUpstreams)(nil)
	_ reverseproxy.UpstreamSource = (*ZooKeeperUpstreams)(nil)
)
