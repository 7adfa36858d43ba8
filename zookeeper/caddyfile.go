package zookeeper

import (
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"

	cf "github.com/caddy-discovery/caddy-discovery/caddyfile"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("zookeeper", parseGlobalOption)
}

// parseGlobalOption reads the zookeeper global option into the zookeeper
// app:
//
//	{
//		zookeeper {
//			server <name> {
//				servers          <host:port...>
//				session_timeout  <duration>
//				username         <user>
//				password         <password>
//				relist_interval  <duration>
//				tls
//				ca_file          <path>
//				cert_file        <path>
//				key_file         <path>
//				tls_server_name  <name>
//			}
//		}
//	}
var parseGlobalOption = cf.ServerOption("zookeeper", "server default { servers 10.0.0.1:2181 }", (*Server).options)

// UnmarshalCaddyfile sets up the source from Caddyfile tokens. Syntax:
//
//	dynamic zookeeper <service> {
//		format           curator|dubbo|apisix
//		base_path        <path>
//		ssl_port
//		protocols        <protocol...>
//		metadata         <key> <value>
//		server           <name>
//
//		servers          <host:port...>
//		session_timeout  <duration>
//		username         <user>
//		password         <password>
//		relist_interval  <duration>
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
// metadata may be given once per key. allow … denied_status apply to a
// service chosen per request: one with request placeholders, such as
// {re.svc.1} or {http.request.host.labels.2}.
func (u *ZooKeeperUpstreams) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	return cf.Source(d, "zookeeper", &u.Service, "dynamic zookeeper needs a service, e.g. dynamic zookeeper orders", u.options(), u.Validate)
}

// options are the source's subdirectives.
func (u *ZooKeeperUpstreams) options() cf.Options {
	return cf.Options{
		"format": cf.String(&u.Format), "base_path": cf.String(&u.BasePath), "ssl_port": cf.Flag(&u.SSLPort),
		"protocols": cf.Strings(&u.Protocols), "metadata": cf.Map(&u.Metadata, "metadata version 1.0.0"),
		"server": cf.String(&u.ServerName),
	}.With(u.Server.options()).With(cf.PerRequest(&u.PerRequest))
}

// options are the subdirectives of a connection.
func (s *Server) options() cf.Options {
	return cf.Options{
		"servers": cf.Strings(&s.Servers), "session_timeout": cf.Duration(&s.SessionTimeout), "relist_interval": cf.Duration(&s.RelistInterval),
		"username": cf.String(&s.Username), "password": cf.Secret(&s.Password),
	}.With(cf.TLS(&s.ClientTLS))
}
