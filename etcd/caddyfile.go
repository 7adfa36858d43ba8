package etcd

import (
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"

	cf "github.com/caddy-discovery/caddy-discovery/caddyfile"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("etcd", parseGlobalOption)
}

var connectionOptions = append([]string{"endpoints", "username", "password", "dial_timeout"}, cf.TLSOptions...)

var sourceOptions = append([]string{"format", "prefix", "metadata", "fields", "server"}, connectionOptions...)

// UnmarshalCaddyfile sets up the source from Caddyfile tokens. Syntax:
//
//	dynamic etcd <service> {
//		format           etcd|kratos|go-zero|json
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
//	}
//
// metadata may be given once per key. An endpoint is host:port or
// http[s]://host:port. fields names the json format's fields, in order.
func (u *EtcdUpstreams) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	return cf.Source(d, "etcd", &u.Service, "dynamic etcd needs a service, e.g. dynamic etcd my-service",
		u.unmarshalOption, u.Validate, sourceOptions...)
}

// unmarshalOption reads one subdirective of the source; ok is false for an
// unknown one.
func (u *EtcdUpstreams) unmarshalOption(d *caddyfile.Dispenser) (ok bool, err error) {
	switch d.Val() {
	case "format":
		return true, cf.String(d, &u.Format)
	case "prefix":
		return true, cf.String(d, &u.Prefix)
	case "metadata":
		return true, cf.Map(d, &u.Metadata, "metadata version v2")
	case "fields":
		if u.Fields != nil {
			return true, d.Errf("fields has already been specified")
		}
		args := d.RemainingArgs()
		if len(args) < 1 || len(args) > 4 {
			return true, d.Errf("fields takes the json format's field names of address, and optionally port, weight and metadata, e.g. fields host port weight meta")
		}
		f := new(JSONFields)
		for i, dst := range []*string{&f.Address, &f.Port, &f.Weight, &f.Metadata}[:len(args)] {
			*dst = args[i]
		}
		u.Fields = f
		return true, nil
	case "server":
		return true, cf.String(d, &u.ServerName)
	}
	return u.Server.unmarshalOption(d)
}

// unmarshalOption reads one connection subdirective; ok is false for any
// other subdirective.
func (s *Server) unmarshalOption(d *caddyfile.Dispenser) (ok bool, err error) {
	switch d.Val() {
	case "endpoints":
		return true, cf.Strings(d, &s.Endpoints)
	case "username":
		return true, cf.String(d, &s.Username)
	case "password":
		return true, cf.Secret(d, &s.Password)
	case "dial_timeout":
		return true, cf.Duration(d, &s.DialTimeout)
	}
	return cf.TLS(d, &s.ClientTLS)
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
func parseGlobalOption(d *caddyfile.Dispenser, existing any) (any, error) {
	app := new(App)
	return cf.NamedBlocks(d, existing, "etcd", app, &app.Servers, "server",
		"server default { endpoints 10.0.0.1:2379 }", connectionOptions, (*Server).unmarshalOption)
}
