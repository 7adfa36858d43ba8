package consul

import (
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"

	cf "github.com/caddy-discovery/caddy-discovery/caddyfile"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("consul", parseGlobalOption)
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
var parseGlobalOption = cf.ServerOption("consul", "server default { addresses 10.0.0.1:8500 }", (*Server).options)

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
//
//		allow                 <pattern...>
//		deny                  <pattern...>
//		regex
//		max_services          <n>
//		idle_timeout          <duration>
//		first_answer_timeout  <duration>
//		max_lookups           <n>
//		unknown_ttl           <duration>
//		denied_status         <status>
//	}
//
// allow … denied_status apply to a service chosen per request: one with
// request placeholders, such as {re.svc.1} or {http.request.host.labels.2}.
//
// A filter expression has spaces and quotes: write it in backticks, as in
// filter `Service.Meta.version == "v2"`. An address is host[:port] or
// http[s]://host[:port][/path-prefix].
func (u *ConsulUpstreams) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	return cf.Source(d, "consul", &u.Service, "dynamic consul needs a service, e.g. dynamic consul web", u.options(), u.Validate)
}

// options are the source's subdirectives.
func (u *ConsulUpstreams) options() cf.Options {
	return cf.Options{
		"datacenter": cf.String(&u.Datacenter), "tags": cf.Strings(&u.Tags), "filter": cf.Func(u.unmarshalFilter),
		"namespace": cf.String(&u.Namespace), "partition": cf.String(&u.Partition),
		"server": cf.String(&u.ServerName),
	}.With(u.Server.options()).With(cf.PerRequest(&u.PerRequest))
}

// unmarshalFilter reads the filter subdirective: one expression, which has
// spaces and quotes.
func (u *ConsulUpstreams) unmarshalFilter(d *caddyfile.Dispenser) error {
	if u.Filter != "" {
		return d.Errf("filter has already been specified")
	}
	args := d.RemainingArgs()
	if len(args) != 1 {
		return d.Errf("filter takes one expression, not %d arguments: quote it with backticks, e.g. filter `Service.Meta.version == \"v2\"`", len(args))
	}
	u.Filter = args[0]
	return nil
}

// options are the subdirectives of a connection.
func (s *Server) options() cf.Options {
	return cf.Options{"addresses": cf.Strings(&s.Addresses), "token": cf.Secret(&s.Token), "token_file": cf.String(&s.TokenFile)}.
		With(cf.TLS(&s.ClientTLS))
}
