// Package consul provides the http.reverse_proxy.upstreams.consul upstream
// source, fed by the passing instances of a Consul service through blocking
// queries (long-polls) of Consul's health API, and the consul app that holds
// named server connections.
package consul

import (
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
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
	// server named "default" if the app defines one, else the connection
	// fields below, else the local agent at 127.0.0.1:8500 without a token.
	ServerName string `json:"server,omitempty"`

	// A connection of its own, when no `server` is named: see the `consul`
	// app's servers for the fields.
	Server

	pub        *upstreams.Publisher
	watch      *watch
	keys       []string
	unregister func()
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
	// in this config's registry, which the admin API's /metrics (also
	// registered by the admin module) and any metrics handler serve
	if err := upstreams.RegisterMetrics(ctx.GetMetricsRegistry()); err != nil {
		return err
	}
	appVal, err := ctx.App("consul")
	if err != nil {
		return err
	}
	return u.provision(ctx.Logger(), appVal.(*App))
}

func (u *ConsulUpstreams) provision(log *zap.Logger, app *App) error {
	q, err := u.query(caddy.NewReplacer())
	if err != nil {
		return err
	}
	name, e, err := app.endpoint(u.ServerName, u.Server)
	if err != nil {
		return err
	}
	c, clientKey, err := acquireClient(name, e)
	if err != nil {
		return err
	}
	u.keys = append(u.keys, clientKey)
	w, watchKey, err := acquireWatch(c, clientKey, q)
	if err != nil {
		return err
	}
	u.keys = append(u.keys, watchKey)
	u.pub = upstreams.NewPublisher(log, q.name())
	u.watch = w
	w.addPublisher(u.pub)
	u.unregister = upstreams.Register("consul", q.name(), u.pub.Cell())
	app.track(c, w)
	return nil
}

// Validate checks the configuration as written: every field, except that
// values with placeholders are checked once Provision has replaced them. It
// runs at adapt time (UnmarshalCaddyfile) and after Provision, and reads no
// file.
func (u *ConsulUpstreams) Validate() error {
	if _, err := u.query(nil); err != nil {
		return err
	}
	if u.ServerName != "" {
		if err := upstreams.CheckName("server", u.ServerName); err != nil {
			return fmt.Errorf("server: %w", err)
		}
		if u.Server.connectionSet() {
			return fmt.Errorf("server %q is named and connection fields are set too; define the connection in the consul app's server %q, or remove the server name",
				u.ServerName, u.ServerName)
		}
	}
	return u.Server.Validate()
}

// query replaces the placeholders in the fields that make the query and
// checks them. With a nil repl, fields with placeholders are not checked.
func (u *ConsulUpstreams) query(repl *caddy.Replacer) (query, error) {
	var q query
	fields := []struct {
		name  string
		value string
		dst   *string
		check func(string) error
	}{
		{"service", u.Service, &q.service, checkService},
		{"datacenter", u.Datacenter, &q.datacenter, checkDatacenter},
		{"filter", u.Filter, &q.filter, checkFilter},
		{"namespace", u.Namespace, &q.namespace, checkEnterpriseName},
		{"partition", u.Partition, &q.partition, checkEnterpriseName},
	}
	for _, f := range fields {
		v, ok, err := expand(repl, f.value)
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
		v, ok, err := expand(repl, t)
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

// expand replaces the placeholders in v; without a replacer it reports
// whether v has none, and can be checked as it is.
func expand(repl *caddy.Replacer, v string) (string, bool, error) {
	if repl == nil {
		return v, !strings.Contains(v, "{"), nil
	}
	s, err := repl.ReplaceOrErr(v, true, true)
	return s, err == nil, err
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

// GetUpstreams returns the service's current instances from memory.
func (u *ConsulUpstreams) GetUpstreams(*http.Request) ([]*reverseproxy.Upstream, error) {
	if u.pub == nil {
		return nil, errors.New("consul upstream source is not provisioned")
	}
	return u.pub.Load().Upstreams()
}

// Cleanup leaves the long-poll and the client; the last user of each ends
// it.
func (u *ConsulUpstreams) Cleanup() error {
	if u.unregister != nil {
		u.unregister()
		u.unregister = nil
	}
	if u.pub != nil {
		u.watch.removePublisher(u.pub)
	}
	var errs []error
	// the long-poll's key comes after its client's: release it first
	for _, k := range slices.Backward(u.keys) {
		if _, err := pool.Delete(k); err != nil {
			errs = append(errs, err)
		}
	}
	u.keys = nil
	return errors.Join(errs...)
}

// Interface guards
var (
	_ caddy.Provisioner           = (*ConsulUpstreams)(nil)
	_ caddy.Validator             = (*ConsulUpstreams)(nil)
	_ caddy.CleanerUpper          = (*ConsulUpstreams)(nil)
	_ reverseproxy.UpstreamSource = (*ConsulUpstreams)(nil)
)
