package eureka

import (
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"

	cf "github.com/caddy-discovery/caddy-discovery/caddyfile"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("eureka", parseGlobalOption)
}

// parseGlobalOption reads the eureka global option into the eureka app:
//
//	{
//		eureka {
//			server <name> {
//				urls              <url...>
//				username          <user>
//				password          <password>
//				ca_file           <path>
//				timeout           <duration>
//				refresh_interval  <duration>
//			}
//		}
//	}
var parseGlobalOption = cf.ServerOption("eureka", "server default { urls http://eureka:8761/eureka }", (*Server).options)

// UnmarshalCaddyfile sets up the source from Caddyfile tokens. Syntax:
//
//	dynamic eureka <app> {
//		secure_port
//		metadata          <key> <value>
//		server            <name>
//
//		urls              <url...>
//		username          <user>
//		password          <password>
//		ca_file           <path>
//		timeout           <duration>
//		refresh_interval  <duration>
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
// metadata may be given once per key. A URL is the base of the Eureka API,
// such as http://eureka:8761/eureka. allow … denied_status apply to an
// application chosen per request: one with request placeholders, such as
// {re.app.1} or {http.request.host.labels.2}.
func (u *EurekaUpstreams) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	return cf.Source(d, "eureka", &u.App, "dynamic eureka needs an application name, e.g. dynamic eureka ORDERS", u.options(), u.Validate)
}

// options are the source's subdirectives.
func (u *EurekaUpstreams) options() cf.Options {
	return cf.Options{
		"secure_port": cf.Flag(&u.SecurePort), "metadata": cf.Map(&u.Metadata, "metadata zone east"), "server": cf.String(&u.ServerName),
	}.With(u.Server.options()).With(cf.PerRequest(&u.PerRequest))
}

// options are the subdirectives of a connection.
func (s *Server) options() cf.Options {
	return cf.Options{
		"urls": cf.Strings(&s.URLs), "username": cf.String(&s.Username), "password": cf.Secret(&s.Password),
		"ca_file": cf.String(&s.CAFile), "timeout": cf.Duration(&s.Timeout), "refresh_interval": cf.Duration(&s.RefreshInterval),
	}
}
