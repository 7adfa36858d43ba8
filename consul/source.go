// Package consul provides the http.reverse_proxy.upstreams.consul upstream
// source, fed by the passing instances of a Consul service through blocking
// queries (long-polls) of Consul's health API, and the consul app that holds
// named server connections.
package consul

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"unicode"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"github.com/hashicorp/go-bexpr/grammar"
	"go.uber.org/zap"

	"github.com/caddy-discovery/caddy-discovery/upstreams"
)

func init() {
	caddy.RegisterModule(ConsulUpstreams{})
	caddy.RegisterModule(new(App))
}

// ConsulUpstreams provides upstreams from a Consul service: the addresses of
// its instances that pass all their health checks (node checks included;
// an instance in maintenance mode does not), optionally only those with some
// tags or matching a filter expression. Each upstream keeps its instance's
// Weights.Passing for weighted selection policies.
//
// Caddy keeps a blocking query (a long-poll) on the service's health
// (/v1/health/service/<service>?passing): Consul answers as soon as the
// service changes, so registrations, deregistrations, failing checks and
// maintenance mode reach Caddy within milliseconds, without polling. The
// long-poll is shared by every site that asks the same question (service,
// datacenter, tags, filter, namespace, partition, through the same
// connection) and kept across config reloads. Upstreams are served from
// memory, so a request never waits for Consul; they are sorted by IP
// address, then port.
//
// Until the first answer has arrived, and whenever the service has no
// passing instance, it returns an error saying why, so that reverse_proxy
// falls back to its static upstreams, if any. While Consul is unreachable,
// the last known instances keep being used.
type ConsulUpstreams struct {
	// The name of the Consul service. Required.
	Service string `json:"service,omitempty"`

	// The datacenter to ask about, through the agent's WAN federation.
	// Default: the agent's own datacenter.
	Datacenter string `json:"datacenter,omitempty"`

	// Only instances that have all of these tags are used. Default: no
	// condition.
	Tags []string `json:"tags,omitempty"`

	// Only instances that match this Consul filter expression are used,
	// e.g. `Service.Meta.version == "v2"` or `"canary" not in
	// Service.Tags`; it is evaluated by Consul over the entries of
	// /v1/health/service (Node, Service and Checks). See
	// https://developer.hashicorp.com/consul/api-docs/features/filtering.
	// Default: no condition.
	Filter string `json:"filter,omitempty"`

	// The namespace of the service (Consul Enterprise). Default: the
	// token's namespace, else "default".
	Namespace string `json:"namespace,omitempty"`

	// The admin partition of the service (Consul Enterprise). Default: the
	// token's partition, else "default".
	Partition string `json:"partition,omitempty"`

	// The name of a server defined in the `consul` app. Default: the
	// connection fields below, if any are set; else the server named
	// "default", if the app defines one; else the local agent at
	// 127.0.0.1:8500 without a token.
	ServerName string `json:"server,omitempty"`

	// A connection of its own, when no `server` is named: see the `consul`
	// app's servers for the fields.
	Server

	// With a service chosen per request (request placeholders in
	// `service`, such as {re.svc.1}): the names allowed and the bounds.
	upstreams.PerRequest

	upstreams.Source
	longPoll *longPoll // the long-poll of the source's own service
}

// CaddyModule returns the Caddy module information.
func (ConsulUpstreams) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.reverse_proxy.upstreams.consul",
		New: func() caddy.Module { return new(ConsulUpstreams) },
	}
}

// Provision checks the configuration and joins (or creates) the client and
// the long-poll. It reads the TLS and token files but makes no request to
// Consul: the consul app starts the long-polls when the config starts (which
// `caddy validate` never does).
func (u *ConsulUpstreams) Provision(ctx caddy.Context) error {
	app, err := upstreams.Open[*App](ctx, "consul")
	if err != nil {
		return err
	}
	return u.provision(ctx.Logger(), app)
}

func (u *ConsulUpstreams) provision(log *zap.Logger, app *App) error {
	repl := caddy.NewReplacer()
	service, err := u.PerRequest.Reference(repl, u.Service)
	if err != nil {
		return err
	}
	name, srv, err := servers.Resolve(app.Servers, u.ServerName, u.Server)
	if err != nil {
		return err
	}
	e, err := srv.endpoint()
	if err != nil {
		return servers.In(name, err)
	}
	c, err := acquireClient(&u.Source, name, e)
	if err != nil {
		return err
	}
	app.Add(c.start)
	// open follows service's passing instances through src: the source's
	// own, or a service chosen per request's.
	open := func(src *upstreams.Source, service string) (func(), error) {
		q, err := u.queryOf(repl, service)
		if err != nil {
			return nil, err
		}
		w, err := acquireLongPoll(src, c, q)
		if err != nil {
			return nil, err
		}
		if src == &u.Source {
			u.longPoll = w
		}
		pub := src.Publish(log, "consul", q.name())
		w.fan.Join(src, pub)
		return w.start, nil
	}
	return u.Serve(&app.Starts, "consul", service, u.PerRequest, checkService, open)
}

// Validate checks the configuration as written: every field, except that
// values with placeholders are checked once Provision has replaced them. It
// runs at adapt time (UnmarshalCaddyfile) and after Provision, and reads no
// file.
func (u *ConsulUpstreams) Validate() error {
	if _, err := u.query(nil); err != nil {
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

// query replaces the placeholders in the fields that make the query and
// checks them. With a nil repl, fields with placeholders are not checked.
func (u *ConsulUpstreams) query(repl *caddy.Replacer) (query, error) {
	return u.queryOf(repl, u.Service)
}

// queryOf is query for service (as written, or chosen per request) instead
// of the service field.
func (u *ConsulUpstreams) queryOf(repl *caddy.Replacer, service string) (query, error) {
	var q query
	fields := []struct {
		name  string
		value string
		dst   *string
		check func(string) error
	}{
		{"service", service, &q.service, checkService},
		{"datacenter", u.Datacenter, &q.datacenter, checkDatacenter},
		{"filter", u.Filter, &q.filter, checkFilter},
		{"namespace", u.Namespace, &q.namespace, checkEnterpriseName},
		{"partition", u.Partition, &q.partition, checkEnterpriseName},
	}
	for _, f := range fields {
		v, ok, err := upstreams.Expand(repl, f.value)
		if err != nil {
			return q, fmt.Errorf("%s: %w", f.name, err)
		}
		if !ok {
			continue // checked once Provision has replaced the placeholders
		}
		if v == "" && f.name != "service" {
			continue
		}
		if err := f.check(v); err != nil {
			return q, fmt.Errorf("%s: %w", f.name, err)
		}
		*f.dst = v
	}
	for _, t := range u.Tags {
		v, ok, err := upstreams.Expand(repl, t)
		if err != nil {
			return q, fmt.Errorf("tags: %w", err)
		}
		if !ok {
			continue
		}
		if err := checkTag(v); err != nil {
			return q, fmt.Errorf("tags: %w", err)
		}
		q.tags = append(q.tags, v)
	}
	q.tags = normalizeTags(q.tags)
	return q, nil
}

func checkService(s string) error {
	switch {
	case s == "":
		return errors.New("required; name the Consul service, e.g. dynamic consul web")
	case strings.ContainsFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) || r == '/' }):
		return fmt.Errorf("%q is not a Consul service name: no spaces, control characters or '/'", s)
	}
	return nil
}

var datacenterName = regexp.MustCompile(`^[a-z0-9_-]+$`)

func checkDatacenter(s string) error {
	if !datacenterName.MatchString(s) {
		return fmt.Errorf("%q is not a Consul datacenter name: lowercase letters, digits, '-' and '_' (Consul lowercases the names it is given)", s)
	}
	return nil
}

// enterpriseName is the form of Consul Enterprise namespace and partition
// names: a DNS label.
var enterpriseName = regexp.MustCompile(`^[a-zA-Z0-9]([a-zA-Z0-9-]{0,62}[a-zA-Z0-9])?$`)

func checkEnterpriseName(s string) error {
	if !enterpriseName.MatchString(s) {
		return fmt.Errorf("%q is not a Consul namespace or partition name: up to 63 letters, digits and '-', not starting or ending with '-'", s)
	}
	return nil
}

func checkTag(s string) error {
	if s == "" || strings.ContainsFunc(s, unicode.IsControl) {
		return fmt.Errorf("%q is not a tag: tags are not empty and have no control characters", s)
	}
	return nil
}

// checkFilter checks the syntax of a filter expression, with the grammar of
// the go-bexpr library Consul evaluates it with. Whether its selectors
// exist is for Consul to say: an unknown one is reported once the
// long-poll runs.
func checkFilter(s string) error {
	if _, err := grammar.Parse("", []byte(s)); err != nil {
		return fmt.Errorf("%q is not a Consul filter expression: %v; e.g. Service.Meta.version == \"v2\" (see https://developer.hashicorp.com/consul/api-docs/features/filtering)", s, err)
	}
	return nil
}

// Interface guards
var (
	_ caddy.App                   = (*App)(nil)
	_ caddy.Provisioner           = (*ConsulUpstreams)(nil)
	_ caddy.Validator             = (*ConsulUpstreams)(nil)
	_ caddy.CleanerUpper          = (*ConsulUpstreams)(nil)
	_ reverseproxy.UpstreamSource = (*ConsulUpstreams)(nil)
)
