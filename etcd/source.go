// Package etcd provides the http.reverse_proxy.upstreams.etcd upstream
// source, fed by the instances that registrars (etcd's gRPC naming,
// go-kratos, go-zero, or any JSON layout) keep under a key prefix in etcd,
// followed with an etcd watch, and the etcd app that holds named server
// connections.
package etcd

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
	caddy.RegisterModule(EtcdUpstreams{})
	caddy.RegisterModule(new(App))
}

// EtcdUpstreams provides upstreams from the instances of a service that
// its registrar keeps in etcd, one key per instance under the service's key
// prefix, in the registrar's format: etcd's own gRPC naming (the default),
// go-kratos, go-zero, or a JSON object whose fields you name. Each upstream
// keeps its instance's weight, where the format has one, for weighted
// selection policies.
//
// Caddy reads the prefix once, then follows it with an etcd watch: a
// registration, a deregistration, or a registrar that died (its lease
// expires and etcd deletes its key) reaches Caddy within milliseconds,
// without polling. The watch is shared by every site that reads the same
// prefix through the same connection, and kept across config reloads.
// Upstreams are served from memory, so a request never waits for etcd;
// they are sorted by IP address, then port.
//
// Until the first read, and whenever the service has no usable instance,
// it returns an error saying why, so that reverse_proxy falls back to its
// static upstreams, if any. While etcd is unreachable, the last known
// instances keep being used.
type EtcdUpstreams struct {
	// The service: the registrar's name for it, from which the format
	// derives the key prefix (etcd, go-zero and json: <service>/; kratos:
	// /microservices/<service>/; go-micro: /micro/registry/<service>/).
	// Required.
	Service string `json:"service,omitempty"`

	// How instances are written: `etcd` (go.etcd.io/etcd/client/v3/naming/endpoints,
	// as gRPC's etcd resolver reads them), `kratos` (go-kratos's etcd
	// registry; its http:// endpoint is used), `go-zero` (discov's
	// publisher: the value is ip:port), `go-micro` (go-micro's etcd
	// registry) or `json` (an object with the fields named in `fields`).
	// Default: etcd
	Format string `json:"format,omitempty"`

	// The key prefix to read, when it is not the one the format derives
	// from `service`, e.g. a registrar's own namespace. Default: see
	// `service`.
	Prefix string `json:"prefix,omitempty"`

	// Only instances whose metadata has all of these keys with exactly
	// these values are used (etcd: the Metadata object's string, number
	// and boolean values; kratos: metadata, and version; go-micro: the
	// node's metadata, the service's, and version; json: the metadata
	// field). go-zero instances have none. Default: no condition.
	Metadata map[string]string `json:"metadata,omitempty"`

	// With format json: the names of the fields that hold the address,
	// port, weight and metadata.
	Fields *JSONFields `json:"fields,omitempty"`

	// The name of a server defined in the `etcd` app. Default: the
	// connection fields below, if any are set; else the server named
	// "default", if the app defines one; else 127.0.0.1:2379 without
	// authentication.
	ServerName string `json:"server,omitempty"`

	// A connection of its own, when no `server` is named: see the `etcd`
	// app's servers for the fields.
	Server

	// With a service chosen per request (request placeholders in
	// `service`, such as {re.svc.1}): the names allowed and the bounds.
	upstreams.PerRequest

	upstreams.Source
}

// CaddyModule returns the Caddy module information.
func (EtcdUpstreams) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.reverse_proxy.upstreams.etcd",
		New: func() caddy.Module { return new(EtcdUpstreams) },
	}
}

// Provision checks the configuration and joins (or creates) the client and
// the watch. It reads the TLS files but makes no request to etcd: the etcd
// app starts the watches when the config starts (which `caddy validate`
// never does).
func (u *EtcdUpstreams) Provision(ctx caddy.Context) error {
	app, err := upstreams.Open[*App](ctx, "etcd")
	if err != nil {
		return err
	}
	return u.provision(ctx.Logger(), app)
}

func (u *EtcdUpstreams) provision(log *zap.Logger, app *App) error {
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
	// open follows service's keys through src: the source's own, or a
	// service chosen per request's.
	open := func(src *upstreams.Source, service string) (func(), error) {
		v, err := u.view(repl, service)
		if err != nil {
			return nil, err
		}
		w, err := acquireWatch(src, c, v.prefix)
		if err != nil {
			return nil, err
		}
		v.where, v.pub = st.where, src.Publish(log, "etcd", upstreams.Named(v.prefix, v.selection()))
		w.fan.Join(src, v)
		return w.start, nil
	}
	return u.Serve(&app.Starts, "etcd", service, u.PerRequest, func(name string) error { return checkKey("service", name) }, open)
}

// Validate checks the configuration as written: every field, except that
// values with placeholders are checked once Provision has replaced them. It
// runs at adapt time (UnmarshalCaddyfile) and after Provision, and reads no
// file.
func (u *EtcdUpstreams) Validate() error {
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
// with its placeholders replaced) and replaces the placeholders in prefix;
// with a nil repl, or a service with placeholders, what has placeholders is
// not checked.
func (u *EtcdUpstreams) view(repl *caddy.Replacer, service string) (*view, error) {
	v := &view{format: cmpString(u.Format, formatEtcd), metadata: maps.Clone(u.Metadata)}
	if !slices.Contains(formats, v.format) {
		return nil, fmt.Errorf("format: unknown format %q; use %s", v.format, strings.Join(formats, ", "))
	}
	if u.Fields != nil {
		if v.format != formatJSON {
			return nil, fmt.Errorf("fields: only apply to format json, not %s", v.format)
		}
		v.fields = *u.Fields
	}
	for k := range u.Metadata {
		if k == "" {
			return nil, errors.New("metadata: empty key")
		}
	}
	if v.format == formatGoZero && len(u.Metadata) > 0 {
		return nil, errors.New("metadata: go-zero instances have none; remove metadata, or use another format")
	}
	if !strings.Contains(service, "{") {
		if err := checkKey("service", service); err != nil {
			return nil, err
		}
	}
	prefix, ok, err := upstreams.Expand(repl, u.Prefix)
	if err != nil {
		return nil, fmt.Errorf("prefix: %w", err)
	}
	if ok && prefix != "" {
		if err := checkKey("prefix", prefix); err != nil {
			return nil, err
		}
	}
	if u.Prefix != "" && strings.Contains(service, "{") {
		return nil, errors.New("prefix: a service chosen per request derives its key prefix from the format; remove prefix")
	}
	v.prefix = cmpString(prefix, defaultPrefix(v.format, service))
	return v, nil
}

// checkKey checks a service name or key prefix.
func checkKey(field, s string) error {
	switch {
	case s == "":
		return fmt.Errorf("%s: required; name the service as its registrar does, e.g. dynamic etcd my-service", field)
	case strings.ContainsFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }):
		return fmt.Errorf("%s: %q holds spaces or control characters; etcd keys of registrars have none", field, s)
	}
	return nil
}

// Interface guards
var (
	_ caddy.App                   = (*App)(nil)
	_ caddy.Provisioner           = (*EtcdUpstreams)(nil)
	_ caddy.Validator             = (*EtcdUpstreams)(nil)
	_ caddy.CleanerUpper          = (*EtcdUpstreams)(nil)
	_ reverseproxy.UpstreamSource = (*EtcdUpstreams)(nil)
)
