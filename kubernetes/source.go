// Package kubernetes provides the http.reverse_proxy.upstreams.k8s upstream
// source, fed by Kubernetes Services and EndpointSlices through client-go
// informers, and the k8s app that holds named cluster connections.
package kubernetes

import (
	"cmp"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"go.uber.org/zap"
	"k8s.io/client-go/kubernetes"

	"github.com/caddy-discovery/caddy-discovery/upstreams"
)

func init() {
	caddy.RegisterModule(KubernetesUpstreams{})
	caddy.RegisterModule(new(App))
}

// KubernetesUpstreams provides upstreams from a Kubernetes Service: the
// addresses of its ready Pods (from EndpointSlices), its cluster IP, or its
// node ports on every node.
//
// Caddy watches the Service and its EndpointSlices (and, for node_port, the
// Nodes) with client-go informers shared by every site and kept across config
// reloads. Upstreams are served from memory, so a request never waits for the
// API server; they follow scaling, rollouts and readiness changes within
// moments. Returned upstreams are sorted by IP address, then port.
//
// Until the first list from the API server has arrived, and whenever the
// Service has no usable backend, it returns an error saying why, so that
// reverse_proxy falls back to its static upstreams, if any. When the API
// server becomes unreachable or refuses access, the last known backends keep
// being used.
//
// Only the namespaces of referenced Services are watched, so a Role (not a
// ClusterRole) granting get, list and watch on services and
// endpointslices.discovery.k8s.io in those namespaces is enough. node_port
// also needs get, list and watch on nodes, which takes a ClusterRole.
type KubernetesUpstreams struct {
	// The Service to proxy to, in one of these forms:
	//
	//	namespace/name[:port]
	//	cluster/namespace/name[:port]
	//	name.namespace[.svc[.cluster.local]][:port]
	//	name[:port]
	//
	// `cluster` is the name of a cluster in the `k8s` app. Without a
	// namespace, the connection's applies, as in kubectl: in a Pod, the
	// service account's namespace ($POD_NAMESPACE if set); with a
	// kubeconfig, its context's namespace; otherwise "default". The port is
	// the Service port's name or number, or its targetPort; it may be left
	// out when the Service has a single port. Required.
	Service string `json:"service,omitempty"`

	// The Service port, when `service` does not name one: a name ("http")
	// or a number (8080 or "8080").
	Port Port `json:"port,omitempty"`

	// The name of a cluster defined in the `k8s` app, when `service` does
	// not name one. Default: the connection fields below, if any are set;
	// else the cluster named "default", if the app defines one; else the
	// in-cluster service account or the kubeconfig found by kubectl's
	// rules.
	Cluster string `json:"cluster,omitempty"`

	// What to proxy to:
	//
	// - `endpoints`: each ready Pod's IP with the Service's targetPort. The
	//   gateway must be able to reach Pod IPs (it runs in the cluster, or the
	//   network routes Pod IPs to it).
	// - `cluster_ip`: the Service's cluster IP with the Service port, as a
	//   single upstream; kube-proxy balances behind it.
	// - `node_port`: every schedulable node's IP with the Service's nodePort;
	//   for a gateway outside the cluster. Needs a ClusterRole to watch nodes.
	//
	// Default: endpoints
	Target string `json:"target,omitempty"`

	// With target node_port: which node address to use, `internal`
	// (InternalIP) or `external` (ExternalIP). Default: internal
	NodeAddress string `json:"node_address,omitempty"`

	// With target endpoints: prefer endpoints in this zone
	// (topology.kubernetes.io/zone of their node); when the zone has no ready
	// endpoint, use all of them.
	PreferZone string `json:"prefer_zone,omitempty"`

	// With target endpoints: when no endpoint is ready, use the ones that
	// are terminating but still serving, as kube-proxy does, rather than
	// none. Default: false
	FallbackToTerminating bool `json:"fallback_to_terminating,omitempty"`

	// The namespaces this source may read Services from, as APISIX's
	// namespace_selector: e.g. {"match": ["default", "my-[a-z]+"]}. A
	// reference into another namespace is refused: when the config loads,
	// or, for a Service chosen per request, with the denied status before
	// any request to the API server. Namespaces outside it are never
	// watched. Default: every namespace.
	Namespaces *NamespaceSelector `json:"namespaces,omitempty"`

	// Only Services whose labels match this selector, written as kubectl's
	// -l (e.g. `expose=gateway` or `tier in (web,api),!internal`), are
	// seen; any other is "not found" (for a Service chosen per request: the
	// denied status), like Traefik's exposedByDefault=false with a label.
	// The API server applies it to the watch of Services and of their
	// EndpointSlices (Kubernetes copies a Service's labels to its
	// EndpointSlices; slices you manage yourself must carry them too), so
	// Caddy caches only what it selects. Default: every Service.
	LabelSelector string `json:"label_selector,omitempty"`

	// A connection of its own, when no `cluster` is named: see the `k8s`
	// app's clusters for the fields.
	Connection

	// With a Service chosen per request (request placeholders in
	// `service`, such as shop/{re.svc.1}:http; the cluster fixed): the
	// names allowed and the bounds.
	upstreams.PerRequest

	upstreams.Source
	sub  *view           // the source's view of the Service
	held *heldNamespaces // with Services chosen per request
}

// Cleanup releases what the source holds: its services, then the
// namespaces that Services chosen per request were looked up in.
func (u *KubernetesUpstreams) Cleanup() error {
	err := u.Source.Cleanup()
	if u.held != nil {
		err = errors.Join(err, u.held.release())
	}
	return err
}

// heldNamespaces keeps the informer sets of the namespaces that Services
// chosen per request were looked up in for as long as the source is
// loaded, at most as many as the source may follow Services: a Service the
// namespace does not have is then answered from the cache, rather than by
// starting the namespace's informers anew (a list and a watch of each
// resource) whenever its last followed Service was dropped.
type heldNamespaces struct {
	mu   sync.Mutex
	keys map[string]bool
	src  upstreams.Source // holds the leases
}

// hold keeps the informer set of key, unless it is held already or max are.
func (h *heldNamespaces) hold(key string, create func() (*informerSet, error), max int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.keys[key] || len(h.keys) >= max {
		return
	}
	if _, err := upstreams.Acquire(&h.src, key, create); err != nil {
		return // the lookup that asked has the error
	}
	if h.keys == nil {
		h.keys = make(map[string]bool)
	}
	h.keys[key] = true
}

// release lets the held informer sets go.
func (h *heldNamespaces) release() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.keys = nil
	return h.src.Cleanup()
}

// CaddyModule returns the Caddy module information.
func (KubernetesUpstreams) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.reverse_proxy.upstreams.k8s",
		New: func() caddy.Module { return new(KubernetesUpstreams) },
	}
}

// Provision checks the configuration and subscribes to the Service. It makes
// no request to the API server: the k8s app starts the watches when the
// config starts (which `caddy validate` never does).
func (u *KubernetesUpstreams) Provision(ctx caddy.Context) error {
	redirectKlog()
	app, err := upstreams.Open[*App](ctx, "k8s")
	if err != nil {
		return err
	}
	service, err := u.PerRequest.Reference(caddy.NewReplacer(), u.Service)
	if err != nil {
		return err
	}
	cluster := u.Cluster // a service chosen per request is in the source's cluster
	if !upstreams.HasRequestPlaceholders(service) {
		ref, _, err := u.parse(caddy.NewReplacer())
		if err != nil {
			return err
		}
		cluster = ref.Cluster
	}
	sel, err := u.selection()
	if err != nil {
		return err
	}
	name, conn, err := clusters.Resolve(app.Clusters, cluster, u.Connection)
	if err != nil {
		return err
	}
	if name == "" {
		conn.warnFormerNames(ctx.Logger(), "service "+u.Service) // the app warns of its clusters
	}
	name = cmp.Or(name, upstreams.DefaultName) // the source's own connection, or the built-in one
	cfg, fp, err := conn.restConfig(name)
	if err != nil {
		return fmt.Errorf("kubernetes cluster %q: %w", name, err)
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("kubernetes cluster %q: creating client: %w", name, err)
	}
	// refOf is the reference of service, in the connection's namespace if
	// it names none.
	refOf := func(service string) (Reference, error) {
		ref, err := u.reference(service)
		if err != nil {
			return ref, err
		}
		if ref.Cluster != cluster {
			return ref, fmt.Errorf("service: %q names cluster %q; this source's services are in cluster %q", service, ref.Cluster, name)
		}
		if ref.Namespace == "" {
			if ref.Namespace, err = conn.namespace(serviceAccountNamespace); err != nil {
				return ref, fmt.Errorf("service: %q names no namespace and kubernetes cluster %q has none: %w; write namespace/name", service, name, err)
			}
		}
		return ref, sel.namespaces.check(ref.Namespace)
	}
	if upstreams.HasRequestPlaceholders(service) {
		check := func(service string) error { _, err := refOf(service); return err }
		u.held = new(heldNamespaces)
		return u.ServePerRequest("k8s", service, u.PerRequest, check, func(src *upstreams.Source, service string) (func(), error) {
			ref, err := refOf(service)
			if err != nil {
				return nil, err
			}
			return u.follow(src, ctx.Logger(), name, fp, client, ref, sel)
		})
	}
	ref, err := refOf(service)
	if err != nil {
		return err
	}
	return u.subscribe(ctx.Logger(), app, name, fp, client, ref, sel)
}

// Validate checks the configuration as written: every field, except that a
// service with placeholders is checked once Provision has replaced them. It
// runs at adapt time (UnmarshalCaddyfile) and after Provision.
func (u *KubernetesUpstreams) Validate() error {
	if _, err := u.PerRequest.Reference(nil, u.Service); err != nil {
		return err
	}
	sel, err := u.selection()
	if err != nil {
		return err
	}
	if !strings.Contains(u.Service, "{") {
		ref, err := u.reference(u.Service)
		if err != nil {
			return err
		}
		if ref.Namespace != "" {
			if err := sel.namespaces.check(ref.Namespace); err != nil {
				return err
			}
		}
	} else if u.Cluster != "" {
		if err := upstreams.CheckName("cluster", u.Cluster); err != nil {
			return fmt.Errorf("cluster: %w", err)
		}
	}
	return u.Connection.Validate()
}

// parse replaces the placeholders in service and checks the fields: what
// Provision works from.
func (u *KubernetesUpstreams) parse(repl *caddy.Replacer) (Reference, selection, error) {
	service, err := repl.ReplaceOrErr(u.Service, true, true)
	if err != nil {
		return Reference{}, selection{}, fmt.Errorf("service: %w", err)
	}
	ref, err := u.reference(service)
	if err != nil {
		return ref, selection{}, err
	}
	sel, err := u.selection()
	return ref, sel, err
}

// reference turns service (with placeholders replaced) and the port and
// cluster fields into a reference.
func (u *KubernetesUpstreams) reference(service string) (Reference, error) {
	if service == "" {
		return Reference{}, errors.New("service: required; name the Service as namespace/name[:port]")
	}
	ref, err := ParseReference(service)
	if err != nil {
		return ref, fmt.Errorf("service: %w", err)
	}
	if u.Port != "" {
		if ref.Port != "" && ref.Port != string(u.Port) {
			return ref, fmt.Errorf("port: %q conflicts with port %q in service %q; give it once", u.Port, ref.Port, service)
		}
		if err := validatePort(string(u.Port)); err != nil {
			return ref, fmt.Errorf("port: %w", err)
		}
		ref.Port = string(u.Port)
	}
	if u.Cluster != "" {
		if err := upstreams.CheckName("cluster", u.Cluster); err != nil {
			return ref, fmt.Errorf("cluster: %w", err)
		}
		if ref.Cluster != "" && ref.Cluster != u.Cluster {
			return ref, fmt.Errorf("cluster: %q conflicts with cluster %q in service %q; give it once", u.Cluster, ref.Cluster, service)
		}
		ref.Cluster = u.Cluster
	}
	return ref, clusters.CheckSource(ref.Cluster, u.Connection)
}

// selection checks what to proxy to.
func (u *KubernetesUpstreams) selection() (selection, error) {
	sel := selection{target: u.Target, nodeAddress: u.NodeAddress, zone: u.PreferZone, terminatingBackup: u.FallbackToTerminating}
	switch sel.target {
	case "":
		sel.target = targetEndpoints
	case targetEndpoints, targetClusterIP, targetNodePort:
	default:
		return sel, fmt.Errorf("target: unknown target %q; use endpoints, cluster_ip or node_port", sel.target)
	}
	switch sel.nodeAddress {
	case "":
		sel.nodeAddress = nodeInternal
	case nodeInternal, nodeExternal:
		if sel.target != targetNodePort {
			return sel, errors.New("node_address: only applies to target node_port")
		}
	default:
		return sel, fmt.Errorf("node_address: unknown address type %q; use internal or external", sel.nodeAddress)
	}
	if sel.target != targetEndpoints && (sel.zone != "" || sel.terminatingBackup) {
		return sel, errors.New("prefer_zone and fallback_to_terminating only apply to target endpoints")
	}
	var err error
	if sel.namespaces, err = u.Namespaces.compile(); err != nil {
		return sel, err
	}
	sel.labels, err = parseLabelSelector(u.LabelSelector)
	return sel, err
}

// subscribe joins (or creates) the informer sets the reference needs, of
// the cluster named cluster, whose connection has the fingerprint fp, for
// the source's own service; the app starts them.
func (u *KubernetesUpstreams) subscribe(log *zap.Logger, app *App, cluster, fp string, client kubernetes.Interface, ref Reference, sel selection) error {
	start, err := u.follow(&u.Source, log, cluster, fp, client, ref, sel)
	if err != nil {
		return err
	}
	app.Add(start)
	return nil
}

// follow joins (or creates) the informer sets the reference needs through
// src (the source's own, or a service chosen per request's), and returns
// what starts them.
func (u *KubernetesUpstreams) follow(src *upstreams.Source, log *zap.Logger, cluster, fp string, client kubernetes.Interface, ref Reference, sel selection) (func(), error) {
	key := "k8s/" + fp + "/namespace/" + ref.Namespace + "/labels/" + sel.labels
	create := func() (*informerSet, error) {
		return newInformerSet(cluster, ref.Namespace, sel.labels, client, services, endpointSlices)
	}
	ns, err := upstreams.Acquire(src, key, create)
	if err != nil {
		return nil, err
	}
	if src != &u.Source && u.held != nil {
		u.held.hold(key, create, u.PerRequest.Services())
	}
	sub := &view{ref: ref, sel: sel, ns: ns}
	if sel.target == targetNodePort {
		sub.nodes, err = upstreams.Acquire(src, "k8s/"+fp+"/nodes", func() (*informerSet, error) {
			return newInformerSet(cluster, "", "", client, nodes)
		})
		if err != nil {
			return nil, err
		}
	}
	sub.pub = src.Publish(log, "k8s", ref.String())
	for _, s := range sub.sets() {
		s.addView(sub)
	}
	src.OnCleanup(func() {
		for _, s := range sub.sets() {
			s.removeView(sub)
		}
	})
	sub.troubled()
	sub.refresh()
	if src == &u.Source {
		u.sub = sub
	}
	return func() {
		for _, s := range sub.sets() {
			s.start()
		}
	}, nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*KubernetesUpstreams)(nil)
	_ caddy.Validator             = (*KubernetesUpstreams)(nil)
	_ caddy.CleanerUpper          = (*KubernetesUpstreams)(nil)
	_ reverseproxy.UpstreamSource = (*KubernetesUpstreams)(nil)
)
