// Package nacos provides the http.reverse_proxy.upstreams.nacos upstream
// source, fed by Nacos service instances through nacos-sdk-go subscriptions
// (server push over gRPC), and the nacos app that holds named server
// connections.
package nacos

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"go.uber.org/zap"

	"github.com/caddy-discovery/caddy-discovery/upstreams"
)

func init() {
	caddy.RegisterModule(NacosUpstreams{})
	caddy.RegisterModule(new(App))
}

// NacosUpstreams provides upstreams from a Nacos service: the addresses of its
// healthy, enabled instances with a weight above 0, optionally only those in
// some clusters or with some metadata. Each upstream keeps its instance's
// weight for weighted selection policies.
//
// Caddy subscribes to the service and the Nacos server pushes every change;
// the subscription is shared by every site and kept across config reloads.
// Upstreams are served from memory, so a request never waits for Nacos; they
// follow registrations, deregistrations, weight and enabled/healthy changes
// within about a second. Returned upstreams are sorted by IP address, then
// port. As a safety net behind the push, the service is re-read from the
// server every `reconcile_interval` of its server and at once after a lost
// connection comes back.
//
// Until the first instance list has arrived, and whenever the service has no
// usable instance, it returns an error saying why, so that reverse_proxy falls
// back to its static upstreams, if any. While the Nacos server is unreachable,
// the last known instances keep being used; see `protect_threshold` for
// updates that would empty the service meanwhile.
type NacosUpstreams struct {
	// The service to proxy to, in one of these forms:
	//
	//	service
	//	group@@service
	//	namespace/group/service
	//
	// The first uses the group DEFAULT_GROUP (or `group`); the second is
	// Nacos's own grouped name; the third is APISIX's namespace_id,
	// group_name and service_name joined with '/' (an empty namespace, as in
	// "/group/service", is the server's; an empty group is DEFAULT_GROUP).
	// Namespaces and groups are made of letters, digits and "-_.:"; service
	// names of printable characters without whitespace, '/' or "@@".
	// Required.
	Service string `json:"service,omitempty"`

	// The namespace ID (not its display name), when `service` does not name
	// one. Default: the server's `namespace`, else Nacos's public namespace.
	Namespace string `json:"namespace,omitempty"`

	// The group, when `service` does not name one. Default: DEFAULT_GROUP
	Group string `json:"group,omitempty"`

	// Only instances in these clusters are used. Default: all clusters.
	Clusters []string `json:"clusters,omitempty"`

	// Only instances whose metadata has all of these keys with exactly these
	// values are used, e.g. {"version": "v2"}. Default: no condition.
	Metadata map[string]string `json:"metadata,omitempty"`

	// Keeps the last known instances when an update would leave fewer than
	// this fraction of them (0 to 1) while the connection to the Nacos server
	// is down or was restored less than 10 seconds ago, e.g. a restarted
	// server pushing an empty list before the instances have registered
	// again. The kept instances are replaced by the next update that passes
	// the threshold, or by the current list once the connection has been up
	// for 10 seconds. With 1, any shrinking is held back during that time;
	// 0 disables this. Updates while the connection is healthy always apply.
	// Default: 0
	ProtectThreshold float64 `json:"protect_threshold,omitempty"`

	// The name of a server defined in the `nacos` app. Default: the
	// connection fields below, if any are set; else the server named
	// "default", if the app defines one; else 127.0.0.1:8848 without
	// authentication.
	ServerName string `json:"server,omitempty"`

	// A connection of its own, when no `server` is named: see the `nacos`
	// app's servers for the fields (`namespace` is the field above).
	Server

	// With a service chosen per request (request placeholders in
	// `service`, such as {re.svc.1}; namespace and group fixed): the names
	// allowed and the bounds.
	upstreams.PerRequest

	upstreams.Source
	view         *view         // of the source's own service
	subscription *subscription // of the source's own service
	// tuning is what the client this source creates runs on; nil:
	// defaultTuning. Tests inject fakes and shorter timings here.
	tuning *tuning
}

// CaddyModule returns the Caddy module information.
func (NacosUpstreams) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.reverse_proxy.upstreams.nacos",
		New: func() caddy.Module { return new(NacosUpstreams) },
	}
}

// Provision checks the configuration and joins (or creates) the naming
// client and the subscription. It makes no request to the Nacos server: the
// nacos app starts them when the config starts (which `caddy validate` never
// does).
func (u *NacosUpstreams) Provision(ctx caddy.Context) error {
	redirectSDKLogs()
	app, err := upstreams.Open[*App](ctx, "nacos")
	if err != nil {
		return err
	}
	return u.provision(ctx.Logger(), app)
}

func (u *NacosUpstreams) provision(log *zap.Logger, app *App) error {
	repl := caddy.NewReplacer()
	service, err := u.PerRequest.Reference(repl, u.Service)
	if err != nil {
		return err
	}
	namespace, group, err := u.namespaceGroup(repl)
	if err != nil {
		return err
	}
	f, err := u.filter()
	if err != nil {
		return err
	}
	name, srv, err := servers.Resolve(app.Servers, u.ServerName, u.Server)
	if err != nil {
		return err
	}
	if !upstreams.HasRequestPlaceholders(service) { // the service may name its namespace
		ref, _, err := u.parse(repl)
		if err != nil {
			return err
		}
		namespace = ref.Namespace
	}
	namespace = cmp.Or(namespace, srv.Namespace)
	if err := validateName("namespace", namespace); err != nil {
		return servers.In(name, fmt.Errorf("namespace: %w", err))
	}
	param, err := srv.clientParam(namespace)
	if err != nil {
		return servers.In(name, err)
	}
	reconcile := time.Duration(srv.ReconcileInterval)
	switch {
	case reconcile == 0:
		reconcile = defaultReconcileInterval
	case reconcile < 0:
		reconcile = 0
	}
	c, err := acquireClient(&u.Source, name, param, cmp.Or(u.tuning, productionTuning))
	if err != nil {
		return err
	}
	app.Add(c.start)
	// refOf is service's reference in the client's namespace.
	refOf := func(service string) (Reference, error) {
		ref, err := u.reference(service, namespace, group)
		if err == nil && ref.Namespace != namespace {
			err = fmt.Errorf("service: %q names namespace %q; this source's services are in %q", service, ref.Namespace, namespace)
		}
		ref.Namespace = namespace
		return ref, err
	}
	// open subscribes to service through src: the source's own, or a
	// service chosen per request's.
	open := func(src *upstreams.Source, service string) (func(), error) {
		ref, err := refOf(service)
		if err != nil {
			return nil, err
		}
		w, err := acquireSubscription(src, c, ref)
		if err != nil {
			return nil, err
		}
		v := &view{filter: f, protect: u.ProtectThreshold, reconcile: reconcile, pub: src.Publish(log, "nacos", upstreams.Named(ref.String(), f.String()))}
		if src == &u.Source {
			u.view, u.subscription = v, w
		}
		w.addView(v)
		src.OnCleanup(func() { w.removeView(v) })
		return w.start, nil
	}
	check := func(service string) error { _, err := refOf(service); return err }
	return u.Serve(&app.Starts, "nacos", service, u.PerRequest, check, open)
}

// namespaceGroup replaces the placeholders in namespace and group.
func (u *NacosUpstreams) namespaceGroup(repl *caddy.Replacer) (namespace, group string, err error) {
	if namespace, err = repl.ReplaceOrErr(u.Namespace, true, true); err != nil {
		return "", "", fmt.Errorf("namespace: %w", err)
	}
	if group, err = repl.ReplaceOrErr(u.Group, true, true); err != nil {
		return "", "", fmt.Errorf("group: %w", err)
	}
	return namespace, group, nil
}

// Validate checks the configuration as written: every field, except that
// service, namespace and group are checked together once Provision has
// replaced their placeholders (alone before, where they have none). It runs
// at adapt time (UnmarshalCaddyfile) and after Provision.
func (u *NacosUpstreams) Validate() error {
	if _, err := u.PerRequest.Reference(nil, u.Service); err != nil {
		return err
	}
	placeholders := strings.Contains(u.Service+u.Namespace+u.Group, "{")
	if !placeholders || u.Service == "" {
		if _, err := u.reference(u.Service, u.Namespace, u.Group); err != nil {
			return err
		}
	}
	for _, field := range []struct{ name, val string }{{"namespace", u.Namespace}, {"group", u.Group}} {
		if placeholders && field.val != "" && !strings.Contains(field.val, "{") {
			if err := validateName(field.name, field.val); err != nil {
				return fmt.Errorf("%s: %w", field.name, err)
			}
		}
	}
	if placeholders && u.Service != "" && !strings.Contains(u.Service, "{") {
		if _, err := ParseReference(u.Service); err != nil {
			return fmt.Errorf("service: %w", err)
		}
	}
	if _, err := u.filter(); err != nil {
		return err
	}
	return u.Server.Validate()
}

// parse replaces the placeholders in service, namespace and group, and
// checks the fields: what Provision works from.
func (u *NacosUpstreams) parse(repl *caddy.Replacer) (Reference, filter, error) {
	var vals [3]string
	for i, field := range []struct{ name, val string }{{"service", u.Service}, {"namespace", u.Namespace}, {"group", u.Group}} {
		v, err := repl.ReplaceOrErr(field.val, true, true)
		if err != nil {
			return Reference{}, filter{}, fmt.Errorf("%s: %w", field.name, err)
		}
		vals[i] = v
	}
	ref, err := u.reference(vals[0], vals[1], vals[2])
	if err != nil {
		return ref, filter{}, err
	}
	f, err := u.filter()
	return ref, f, err
}

// reference turns service, namespace and group (placeholders replaced) into
// a reference.
func (u *NacosUpstreams) reference(service, namespace, group string) (Reference, error) {
	if service == "" {
		return Reference{}, fmt.Errorf("service: required; name the Nacos service as %s", referenceForms)
	}
	ref, err := ParseReference(service)
	if err != nil {
		return ref, fmt.Errorf("service: %w", err)
	}
	if namespace != "" {
		if err := validateName("namespace", namespace); err != nil {
			return ref, fmt.Errorf("namespace: %w", err)
		}
		if ref.Namespace != "" && ref.Namespace != namespace {
			return ref, fmt.Errorf("namespace: %q conflicts with namespace %q in service %q; give it once", namespace, ref.Namespace, service)
		}
		ref.Namespace = namespace
	}
	if group != "" {
		if err := validateName("group", group); err != nil {
			return ref, fmt.Errorf("group: %w", err)
		}
		if ref.Group != "" && ref.Group != group {
			return ref, fmt.Errorf("group: %q conflicts with group %q in service %q; give it once", group, ref.Group, service)
		}
		ref.Group = group
	}
	if ref.Group == "" {
		ref.Group = defaultGroup
	}
	return ref, nil
}

// filter checks what to select from the service's instances, and the
// remaining fields.
func (u *NacosUpstreams) filter() (filter, error) {
	var f filter
	for _, c := range u.Clusters {
		if c == "" {
			return f, errors.New("clusters: empty cluster name")
		}
		if err := validateName("cluster", c); err != nil {
			return f, fmt.Errorf("clusters: %w", err)
		}
	}
	for k := range u.Metadata {
		if k == "" {
			return f, errors.New("metadata: empty key")
		}
	}
	if p := u.ProtectThreshold; p < 0 || p > 1 || math.IsNaN(p) {
		return f, fmt.Errorf("protect_threshold: %v is not a fraction from 0 to 1", p)
	}
	if err := servers.CheckSource(u.ServerName, u.Server); err != nil {
		return f, err
	}
	f = filter{clusters: slices.Clone(u.Clusters), metadata: u.Metadata}
	return f, nil
}

// Interface guards
var (
	_ caddy.App                   = (*App)(nil)
	_ caddy.Provisioner           = (*NacosUpstreams)(nil)
	_ caddy.Validator             = (*NacosUpstreams)(nil)
	_ caddy.CleanerUpper          = (*NacosUpstreams)(nil)
	_ reverseproxy.UpstreamSource = (*NacosUpstreams)(nil)
)
