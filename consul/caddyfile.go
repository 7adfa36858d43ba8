package consul

import (
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"

	cf "github.com/caddy-discovery/caddy-discovery/caddyfile"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("consul", parseGlobalOption)
}

var connectionOptions = append([]string{"addresses", "token", "token_file"}, cf.TLSOptions...)

var sourceOptions = append([]string{
	"datacenter", "tags", "filter", "namespace", "partition", "server",
}, connectionOptions...)

// UnmarshalCaddyfile sets up the source from Caddyfile tokens. Syntax:
//
//	dynamic consul <service> {
//		datacenter       <dc>
//		tags             <tag...>
//		filter           <expression>
//		namespace        <namespace>
//		partition        <partition>
//		server           <name>
//
//		addresses        <address...>
//		token            <token>
//		token_file       <path>
//		tls
//		ca_file          <path>
//		cert_file        <path>
//		key_file         <path>
//		tls_server_name  <name>
//	}
//
// A filter expression has spaces and quotes: write it in backticks, as in
// filter `Service.Meta.version == "v2"`. An address is host[:port] or
// http[s]://host[:port][/path-prefix].
func (u *ConsulUpstreams) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	return cf.Source(d, "consul", &u.Service, "dynamic consul needs a service, e.g. dynamic consul web",
		u.unmarshalOption, u.Validate, sourceOptions...)
}

// unmarshalOption reads one subdirective of the source; ok is false for an
// unknown one.
func (u *ConsulUpstreams) unmarshalOption(d *caddyfile.Dispenser) (ok bool, err error) {
	switch d.Val() {
	case "datacenter":
		return true, cf.String(d, &u.Datacenter)
	case "tags":
		return true, cf.Strings(d, &u.Tags)
	case "filter":
		if u.Filter != "" {
			return true, d.Errf("filter has already been specified")
		}
		args := d.RemainingArgs()
		if len(args) != 1 {
			return true, d.Errf("filter takes one expression, not %d arguments: quote it with backticks, e.g. filter `Service.Meta.version == \"v2\"`", len(args))
		}
		u.Filter = args[0]
		return true, nil
	case "namespace":
		return true, cf.String(d, &u.Namespace)
	case "partition":
		return true, cf.String(d, &u.Partition)
	case "server":
		return true, cf.String(d, &u.ServerName)
	}
	return u.Server.unmarshalOption(d)
}

// unmarshalOption reads one connection subdirective; ok is false for any
// other subdirective.
func (s *Server) unmarshalOption(d *caddyfile.Dispenser) (ok bool, err error) {
	switch d.Val() {
	case "addresses":
		return true, cf.Strings(d, &s.Addresses)
	case "token":
		return true, cf.Secret(d, &s.Token)
	case "token_file":
		return true, cf.String(d, &s.TokenFile)
	}
	return cf.TLS(d, &s.ClientTLS)
}

// parseGlobalOption reads the consul global option into the consul app:
//
//	{
//		consul {
//			server <name> {
//				addresses        <address...>
//				token            <token>
//				token_file       <path>
//				tls
//				ca_file          <path>
//				cert_file        <path>
//				key_file         <path>
//				tls_server_name  <name>
//			}
//		}
//	}
func parseGlobalOption(d *caddyfile.Dispenser, existing any) (any, error) {
	app := new(App)
	return cf.NamedBlocks(d, existing, "consul", app, &app.Servers, "server",
		"server default { addresses 10.0.0.1:8500 }", connectionOptions, (*Server).unmarshalOption)
}
