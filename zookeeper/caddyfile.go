package zookeeper

import (
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"

	cf "github.com/caddy-discovery/caddy-discovery/caddyfile"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("zookeeper", parseGlobalOption)
}

var connectionOptions = []string{"servers", "session_timeout", "username", "password", "relist_interval"}

var sourceOptions = append([]string{"format", "base_path", "ssl_port", "protocols", "metadata", "server"}, connectionOptions...)

// UnmarshalCaddyfile sets up the source from Caddyfile tokens. Syntax:
//
//	dynamic zookeeper <service> {
//		format           curator|dubbo
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
//	}
//
// metadata may be given once per key.
func (u *ZooKeeperUpstreams) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	return cf.Source(d, "zookeeper", &u.Service, "dynamic zookeeper needs a service, e.g. dynamic zookeeper orders",
		u.unmarshalOption, u.Validate, sourceOptions...)
}

// unmarshalOption reads one subdirective of the source; ok is false for an
// unknown one.
func (u *ZooKeeperUpstreams) unmarshalOption(d *caddyfile.Dispenser) (ok bool, err error) {
	switch d.Val() {
	case "format":
		return true, cf.String(d, &u.Format)
	case "base_path":
		return true, cf.String(d, &u.BasePath)
	case "ssl_port":
		return true, cf.Flag(d, &u.SSLPort)
	case "protocols":
		return true, cf.Strings(d, &u.Protocols)
	case "metadata":
		return true, cf.Map(d, &u.Metadata, "metadata version 1.0.0")
	case "server":
		return true, cf.String(d, &u.ServerName)
	}
	return u.Server.unmarshalOption(d)
}

// unmarshalOption reads one connection subdirective; ok is false for any
// other subdirective.
func (s *Server) unmarshalOption(d *caddyfile.Dispenser) (ok bool, err error) {
	switch d.Val() {
	case "servers":
		return true, cf.Strings(d, &s.Servers)
	case "session_timeout":
		return true, cf.Duration(d, &s.SessionTimeout)
	case "username":
		return true, cf.String(d, &s.Username)
	case "password":
		return true, cf.Secret(d, &s.Password)
	case "relist_interval":
		return true, cf.Duration(d, &s.RelistInterval)
	}
	return false, nil
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
//			}
//		}
//	}
func parseGlobalOption(d *caddyfile.Dispenser, existing any) (any, error) {
	app := new(App)
	return cf.NamedBlocks(d, existing, "zookeeper", app, &app.Servers, "server",
		"server default { servers 10.0.0.1:2181 }", connectionOptions, (*Server).unmarshalOption)
}
