package etcd

import (
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"

	cf "github.com/caddy-discovery/caddy-discovery/caddyfile"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("etcd", parseGlobalOption)
}

// parseGlobalOption reads the etcd global option into the etcd app:
//
//	{
//		etcd {
//			server <name> {
//				endpoints        <endpoint...>
//				username         <user>
//				password         <password>
//				tls
//				ca_file          <path>
//				cert_file        <path>
//				key_file         <path>
//				tls_server_name  <name>
//				dial_timeout     <duration>
//			}
//		}
//	}
var parseGlobalOption = cf.ServerOption("etcd", "server default { endpoints 10.0.0.1:2379 }", (*Server).options)

// UnmarshalCaddyfile sets up the source from Caddyfile tokens. Syntax:
//
//	dynamic etcd <service> {
//		format           etcd|kratos|go-zero|go-micro|json
//		prefix           <key prefix>
//		metadata         <key> <value>
//		fields           <address> [<port> [<weight> [<metadata>]]]
//		server           <name>
//
//		endpoints        <endpoint...>
//		username         <user>
//		password         <password>
//		tls
//		ca_file          <path>
//		cert_file        <path>
//		key_file         <path>
//		tls_server_name  <name>
//		dial_timeout     <duration>
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
// metadata may be given once per key. An endpoint is host:port or
// http[s]://host:port. fields names the json format's fields, in order.
// allow … denied_status apply to a service chosen per request: one with
// request placeholders, such as {re.svc.1} or {http.request.host.labels.2}.
func (u *EtcdUpstreams) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	return cf.Source(d, "etcd", &u.Service, "dynamic etcd needs a service, e.g. dynamic etcd my-service", u.options(), u.Validate)
}

// options are the source's subdirectives.
func (u *EtcdUpstreams) options() cf.Options {
	return cf.Options{
		"format": cf.String(&u.Format), "prefix": cf.String(&u.Prefix), "fields": cf.Func(u.unmarshalFields),
		"metadata": cf.Map(&u.Metadata, "metadata version v2"), "server": cf.String(&u.ServerName),
	}.With(u.Server.options()).With(cf.PerRequest(&u.PerRequest))
}

// unmarshalFields reads the fields subdirective: the json format's field
// names of address, and optionally port, weight and metadata.
func (u *EtcdUpstreams) unmarshalFields(d *caddyfile.Dispenser) error {
	if u.Fields != nil {
		return d.Errf("fields has already been specified")
	}
	args := d.RemainingArgs()
	if len(args) < 1 || len(args) > 4 {
		return d.Errf("fields takes the json format's field names of address, and optionally port, weight and metadata, e.g. fields host port weight meta")
	}
	f := new(JSONFields)
	for i, dst := range []*string{&f.Address, &f.Port, &f.Weight, &f.Metadata}[:len(args)] {
		*dst = args[i]
	}
	u.Fields = f
	return nil
}

// options are the subdirectives of a connection.
func (s *Server) options() cf.Options {
	return cf.Options{
		"endpoints": cf.Strings(&s.Endpoints), "dial_timeout": cf.Duration(&s.DialTimeout),
		"username": cf.String(&s.Username), "password": cf.Secret(&s.Password),
	}.With(cf.TLS(&s.ClientTLS))
}
