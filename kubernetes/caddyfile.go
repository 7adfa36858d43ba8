package kubernetes

import (
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"

	cf "github.com/caddy-discovery/caddy-discovery/caddyfile"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("k8s", parseGlobalOption)
}

var connectionOptions = []string{
	"kubeconfig", "context", "api_server", "token", "token_file", "ca_file", "insecure_skip_verify",
}

var sourceOptions = append([]string{
	"port", "cluster", "target", "node_address", "prefer_zone", "fallback_to_terminating",
}, connectionOptions...)

// UnmarshalCaddyfile sets up the source from Caddyfile tokens. Syntax:
//
//	dynamic k8s <service> {
//		port                    <name|number>
//		cluster                 <name>
//		target                  endpoints|cluster_ip|node_port
//		node_address            internal|external
//		prefer_zone             <zone>
//		fallback_to_terminating
//
//		kubeconfig              <path>
//		context                 <name>
//		api_server              <url>
//		token                   <token>
//		token_file              <path>
//		ca_file                 <path>
//		insecure_skip_verify
//	}
//
// <service> is namespace/name[:port], cluster/namespace/name[:port],
// name.namespace[.svc[.cluster.local]][:port], or name[:port] in the
// connection's namespace (in a Pod: the service account's).
func (u *KubernetesUpstreams) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	return cf.Source(d, "k8s", &u.Service, "dynamic k8s needs a service, e.g. dynamic k8s shop/web:http",
		u.unmarshalOption, u.Validate, sourceOptions...)
}

// unmarshalOption reads one subdirective of the source; ok is false for an
// unknown one.
func (u *KubernetesUpstreams) unmarshalOption(d *caddyfile.Dispenser) (ok bool, err error) {
	switch d.Val() {
	case "port":
		p := string(u.Port)
		err = cf.String(d, &p)
		u.Port = Port(p)
		return true, err
	case "cluster":
		return true, cf.String(d, &u.Cluster)
	case "target":
		return true, cf.String(d, &u.Target)
	case "node_address":
		return true, cf.String(d, &u.NodeAddress)
	case "prefer_zone":
		return true, cf.String(d, &u.PreferZone)
	case "fallback_to_terminating":
		return true, cf.Flag(d, &u.FallbackToTerminating)
	}
	return u.Connection.unmarshalOption(d)
}

// unmarshalOption reads one connection subdirective; ok is false for any
// other subdirective.
func (c *Connection) unmarshalOption(d *caddyfile.Dispenser) (ok bool, err error) {
	switch d.Val() {
	case "kubeconfig":
		return true, cf.String(d, &c.Kubeconfig)
	case "context":
		return true, cf.String(d, &c.Context)
	case "api_server":
		return true, cf.String(d, &c.APIServer)
	case "server": // the former name of api_server
		return true, cf.String(d, &c.Server)
	case "token":
		return true, cf.Secret(d, &c.Token)
	case "token_file":
		return true, cf.String(d, &c.TokenFile)
	case "ca_file":
		return true, cf.String(d, &c.CAFile)
	case "insecure_skip_verify":
		return true, cf.Flag(d, &c.InsecureSkipVerify)
	}
	return false, nil
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
		"cluster default { kubeconfig /etc/caddy/kubeconfig }", connectionOptions, (*Connection).unmarshalOption)
}
