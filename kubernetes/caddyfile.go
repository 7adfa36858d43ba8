package kubernetes

import (
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"

	cf "github.com/caddy-discovery/caddy-discovery/caddyfile"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("k8s", parseGlobalOption)
}

// UnmarshalCaddyfile sets up the source from Caddyfile tokens. Syntax:
//
//	dynamic k8s <service> {
//		port                    <name|number>
//		cluster                 <name>
//		target                  endpoints|cluster_ip|node_port
//		node_address            internal|external
//		prefer_zone             <zone>
//		fallback_to_terminating
//		namespaces              equal|not_equal <namespace>
//		namespaces              match|not_match <regex...>
//		label_selector          <selector>
//
//		kubeconfig              <path>
//		context                 <name>
//		api_server              <url>
//		token                   <token>
//		token_file              <path>
//		ca_file                 <path>
//		insecure_skip_verify
//
//		allow                   <pattern...>
//		deny                    <pattern...>
//		regex
//		max_services            <n>
//		idle_timeout            <duration>
//		first_answer_timeout    <duration>
//		max_lookups             <n>
//		unknown_ttl             <duration>
//		denied_status           <status>
//	}
//
// <service> is namespace/name[:port], cluster/namespace/name[:port],
// name.namespace[.svc[.cluster.local]][:port], or name[:port] in the
// connection's namespace (in a Pod: the service account's). allow …
// denied_status apply to a Service chosen per request: one with request
// placeholders, such as shop/{re.svc.1}; the patterns match the service as
// the request expands it (shop/cart). namespaces may be given once per
// condition; a label_selector with spaces is quoted.
func (u *KubernetesUpstreams) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	return cf.Source(d, "k8s", &u.Service, "dynamic k8s needs a service, e.g. dynamic k8s shop/web:http", u.options(), u.Validate)
}

// options are the source's subdirectives.
func (u *KubernetesUpstreams) options() cf.Options {
	return cf.Options{
		"port": cf.String((*string)(&u.Port)), "cluster": cf.String(&u.Cluster), "target": cf.String(&u.Target),
		"node_address": cf.String(&u.NodeAddress), "prefer_zone": cf.String(&u.PreferZone),
		"fallback_to_terminating": cf.Flag(&u.FallbackToTerminating),
		"namespaces":              cf.Func(u.unmarshalNamespaces), "label_selector": cf.String(&u.LabelSelector),
	}.With(u.Connection.options()).With(cf.PerRequest(&u.PerRequest))
}

// options are the subdirectives of a connection.
func (c *Connection) options() cf.Options {
	return cf.Options{
		"kubeconfig": cf.String(&c.Kubeconfig), "context": cf.String(&c.Context),
		"api_server": cf.String(&c.APIServer), "server": cf.Former(cf.String(&c.Server)),
		"token": cf.Secret(&c.Token), "token_file": cf.String(&c.TokenFile),
		"ca_file": cf.String(&c.CAFile), "insecure_skip_verify": cf.Flag(&c.InsecureSkipVerify),
	}
}

// parseGlobalOption reads the k8s global option into the k8s app:
//
//	{
//		k8s {
//			cluster <name> {
//				kubeconfig           <path>
//				context              <name>
//				api_server           <url>
//				token                <token>
//				token_file           <path>
//				ca_file              <path>
//				insecure_skip_verify
//			}
//		}
//	}
func parseGlobalOption(d *caddyfile.Dispenser, existing any) (any, error) {
	app := new(App)
	return cf.NamedBlocks(d, existing, "k8s", app, &app.Clusters, "cluster",
		"cluster default { kubeconfig /etc/caddy/kubeconfig }", (*Connection).options)
}
