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

var connectionOptions = []string{
	"addresses", "grpc_port", "username", "password", "access_key", "secret_key",
	"tls", "ca_file", "insecure_skip_verify", "timeout", "reconcile_interval",
}

var sourceOptions = append([]string{
	"namespace", "group", "clusters", "metadata", "protect_threshold", "server",
}, connectionOptions...)

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
//	}
//
// <service> is service, group@@service or namespace/group/service.
// metadata may be given once per key. An address is host[:port] or
// http[s]://host[:port][/context-path].
func (u *NacosUpstreams) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	thresholdSet := false // 0 is a valid value, so the field cannot tell
	return cf.Source(d, "nacos", &u.Service, "dynamic nacos needs a service, e.g. dynamic nacos DEFAULT_GROUP@@orders",
		func(d *caddyfile.Dispenser) (bool, error) {
			if d.Val() != "protect_threshold" {
				return u.unmarshalOption(d)
			}
			if thresholdSet {
				return true, d.Errf("protect_threshold has already been specified")
			}
			thresholdSet = true
			return true, u.unmarshalThreshold(d)
		}, u.Validate, sourceOptions...)
}

// unmarshalOption reads one subdirective of the source, but for
// protect_threshold; ok is false for an unknown one.
func (u *NacosUpstreams) unmarshalOption(d *caddyfile.Dispenser) (ok bool, err error) {
	switch d.Val() {
	case "namespace":
		return true, cf.String(d, &u.Namespace)
	case "group":
		return true, cf.String(d, &u.Group)
	case "clusters":
		return true, cf.Strings(d, &u.Clusters)
	case "metadata":
		return true, cf.Map(d, &u.Metadata, "metadata version v2")
	case "server":
		return true, cf.String(d, &u.ServerName)
	}
	return u.Server.unmarshalOption(d, false)
}

// unmarshalThreshold reads protect_threshold's fraction.
func (u *NacosUpstreams) unmarshalThreshold(d *caddyfile.Dispenser) error {
	var s string
	if err := cf.String(d, &s); err != nil {
		return err
	}
	var err error
	u.ProtectThreshold, err = strconv.ParseFloat(s, 64)
	if err != nil || u.ProtectThreshold < 0 || u.ProtectThreshold > 1 || math.IsNaN(u.ProtectThreshold) {
		return d.Errf("protect_threshold takes a fraction from 0 to 1, not %q", s)
	}
	return nil
}

// unmarshalOption reads one connection subdirective (and namespace, when
// withNamespace); ok is false for any other subdirective.
func (s *Server) unmarshalOption(d *caddyfile.Dispenser, withNamespace bool) (ok bool, err error) {
	switch d.Val() {
	case "addresses":
		return true, cf.Strings(d, &s.Addresses)
	case "grpc_port":
		if err := cf.Int(d, &s.GRPCPort); err != nil {
			return true, err
		}
		if s.GRPCPort < 1 || s.GRPCPort > 65535 {
			return true, d.Errf("grpc_port: %d is out of range 1-65535", s.GRPCPort)
		}
		return true, nil
	case "namespace":
		if !withNamespace {
			return false, nil
		}
		return true, cf.String(d, &s.Namespace)
	case "username":
		return true, cf.String(d, &s.Username)
	case "password":
		return true, cf.Secret(d, &s.Password)
	case "access_key":
		return true, cf.Secret(d, &s.AccessKey)
	case "secret_key":
		return true, cf.Secret(d, &s.SecretKey)
	case "tls":
		return true, cf.Flag(d, &s.TLS)
	case "ca_file":
		return true, cf.String(d, &s.CAFile)
	case "insecure_skip_verify":
		return true, cf.Flag(d, &s.InsecureSkipVerify)
	case "timeout":
		return true, cf.Duration(d, &s.Timeout)
	case "reconcile_interval":
		return true, cf.Duration(d, &s.ReconcileInterval)
	}
	return false, nil
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
func parseGlobalOption(d *caddyfile.Dispenser, existing any) (any, error) {
	app := new(App)
	known := append([]string{"namespace"}, connectionOptions...)
	return cf.NamedBlocks(d, existing, "nacos", app, &app.Servers, "server",
		"server default { addresses 10.0.0.1:8848 }", known, func(s *Server, d *caddyfile.Dispenser) (bool, error) {
			return s.unmarshalOption(d, true)
		})
}
