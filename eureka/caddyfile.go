package eureka

import (
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"

	cf "github.com/caddy-discovery/caddy-discovery/caddyfile"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("eureka", parseGlobalOption)
}

var connectionOptions = []string{"urls", "username", "password", "ca_file", "timeout", "refresh_interval"}

var sourceOptions = append([]string{"secure_port", "metadata", "server"}, connectionOptions...)

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
//	}
//
// metadata may be given once per key. A URL is the base of the Eureka API,
// such as http://eureka:8761/eureka.
func (u *EurekaUpstreams) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	return cf.Source(d, "eureka", &u.App, "dynamic eureka needs an application name, e.g. dynamic eureka ORDERS",
		u.unmarshalOption, u.Validate, sourceOptions...)
}

// unmarshalOption reads one subdirective of the source; ok is false for an
// unknown one.
func (u *EurekaUpstreams) unmarshalOption(d *caddyfile.Dispenser) (ok bool, err error) {
	switch d.Val() {
	case "secure_port":
		return true, cf.Flag(d, &u.SecurePort)
	case "metadata":
		return true, cf.Map(d, &u.Metadata, "metadata zone east")
	case "server":
		return true, cf.String(d, &u.ServerName)
	}
	return u.Server.unmarshalOption(d)
}

// unmarshalOption reads one connection subdirective; ok is false for any
// other subdirective.
func (s *Server) unmarshalOption(d *caddyfile.Dispenser) (ok bool, err error) {
	switch d.Val() {
	case "urls":
		return true, cf.Strings(d, &s.URLs)
	case "username":
		return true, cf.String(d, &s.Username)
	case "password":
		return true, cf.Secret(d, &s.Password)
	case "ca_file":
		return true, cf.String(d, &s.CAFile)
	case "timeout":
		return true, cf.Duration(d, &s.Timeout)
	case "refresh_interval":
		return true, cf.Duration(d, &s.RefreshInterval)
	}
	return false, nil
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
func parseGlobalOption(d *caddyfile.Dispenser, existing any) (any, error) {
	app := new(App)
	return cf.NamedBlocks(d, existing, "eureka", app, &app.Servers, "server",
		"server default { urls http://eureka:8761/eureka }", connectionOptions, (*Server).unmarshalOption)
}
