package nacos

import (
	"math"
	"strconv"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"

	cf "github.com/caddy-discovery/caddy-discovery/caddyfile"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("nacos", parseGlobalOption)
}

// parseGlobalOption reads the nacos global option into the nacos app:
//
//	{
//		nacos {
//			server <name> {
//				addresses            <address...>
//				grpc_port            <port>
//				namespace            <id>
//				username             <user>
//				password             <password>
//				access_key           <key>
//				secret_key           <key>
//				tls
//				ca_file              <path>
//				insecure_skip_verify
//				timeout              <duration>
//				reconcile_interval   <duration>
//			}
//		}
//	}
var parseGlobalOption = cf.ServerOption("nacos", "server default { addresses 10.0.0.1:8848 }", func(s *Server) cf.Options {
	return s.options().With(cf.Options{"namespace": cf.String(&s.Namespace)})
})

// UnmarshalCaddyfile sets up the source from Caddyfile tokens. Syntax:
//
//	dynamic nacos <service> {
//		namespace            <id>
//		group                <group>
//		clusters             <name...>
//		metadata             <key> <value>
//		protect_threshold    <fraction>
//		server               <name>
//
//		addresses            <address...>
//		grpc_port            <port>
//		username             <user>
//		password             <password>
//		access_key           <key>
//		secret_key           <key>
//		tls
//		ca_file              <path>
//		insecure_skip_verify
//		timeout              <duration>
//		reconcile_interval   <duration>
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
// <service> is service, group@@service or namespace/group/service.
// metadata may be given once per key. An address is host[:port] or
// http[s]://host[:port][/context-path]. allow … denied_status apply to a
// service chosen per request: one with request placeholders, such as
// {re.svc.1} or {http.request.host.labels.2}.
func (u *NacosUpstreams) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	return cf.Source(d, "nacos", &u.Service, "dynamic nacos needs a service, e.g. dynamic nacos DEFAULT_GROUP@@orders", u.options(), u.Validate)
}

// options are the source's subdirectives.
func (u *NacosUpstreams) options() cf.Options {
	return cf.Options{
		"namespace": cf.String(&u.Namespace), "group": cf.String(&u.Group), "clusters": cf.Strings(&u.Clusters),
		"metadata": cf.Map(&u.Metadata, "metadata version v2"), "protect_threshold": u.unmarshalThreshold(),
		"server": cf.String(&u.ServerName),
	}.With(u.Server.options()).With(cf.PerRequest(&u.PerRequest))
}

// unmarshalThreshold reads protect_threshold, a fraction from 0 to 1.
func (u *NacosUpstreams) unmarshalThreshold() cf.Option {
	set := false // 0 is a valid value, so the field cannot tell
	return cf.Func(func(d *caddyfile.Dispenser) error {
		if set {
			return d.Errf("protect_threshold has already been specified")
		}
		set = true
		var s string
		if err := cf.String(&s).Read(d); err != nil {
			return err
		}
		var err error
		u.ProtectThreshold, err = strconv.ParseFloat(s, 64)
		if err != nil || u.ProtectThreshold < 0 || u.ProtectThreshold > 1 || math.IsNaN(u.ProtectThreshold) {
			return d.Errf("protect_threshold takes a fraction from 0 to 1, not %q", s)
		}
		return nil
	})
}

// options are the subdirectives of a connection, but for namespace, which
// only the app's servers have (a source names its namespace itself).
func (s *Server) options() cf.Options {
	return cf.Options{
		"addresses": cf.Strings(&s.Addresses), "grpc_port": cf.Func(s.unmarshalGRPCPort),
		"username": cf.String(&s.Username), "password": cf.Secret(&s.Password),
		"access_key": cf.Secret(&s.AccessKey), "secret_key": cf.Secret(&s.SecretKey),
		"tls": cf.Flag(&s.TLS), "ca_file": cf.String(&s.CAFile), "insecure_skip_verify": cf.Flag(&s.InsecureSkipVerify),
		"timeout": cf.Duration(&s.Timeout), "reconcile_interval": cf.Duration(&s.ReconcileInterval),
	}
}

// unmarshalGRPCPort reads grpc_port, a port number.
func (s *Server) unmarshalGRPCPort(d *caddyfile.Dispenser) error {
	if err := cf.Int(&s.GRPCPort).Read(d); err != nil {
		return err
	}
	if s.GRPCPort < 1 || s.GRPCPort > 65535 {
		return d.Errf("grpc_port: %d is out of range 1-65535", s.GRPCPort)
	}
	return nil
}
