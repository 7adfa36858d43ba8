// Package caddyfile holds the Caddyfile parsing steps that the registry
// sources share: reading one subdirective's arguments into a config field,
// refusing the same subdirective twice, reading the named connection blocks
// of an app's global option.
package caddyfile

import (
	"encoding/json"
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"

	"github.com/caddy-discovery/caddy-discovery/upstreams"
)

// String reads the single argument of the current subdirective into dst.
func String(d *caddyfile.Dispenser, dst *string) error {
	if err := once(d, *dst != ""); err != nil {
		return err
	}
	if !d.NextArg() {
		return d.ArgErr()
	}
	*dst = d.Val()
	if d.NextArg() {
		return d.ArgErr()
	}
	return nil
}

// Secret reads the single argument of the current subdirective, a password,
// token or key, into dst. Unlike String's, its errors never show an argument:
// a secret written with a space in it would otherwise appear in the error.
func Secret(d *caddyfile.Dispenser, dst *string) error {
	name := d.Val()
	if err := once(d, *dst != ""); err != nil {
		return err
	}
	args := d.RemainingArgs()
	if len(args) != 1 {
		return d.Errf("%s takes one argument, not %d; quote a value with spaces in it, or use a placeholder such as {env.SECRET}", name, len(args))
	}
	*dst = args[0]
	return nil
}

// Strings reads the one or more arguments of the current subdirective into dst.
func Strings(d *caddyfile.Dispenser, dst *[]string) error {
	if err := once(d, len(*dst) > 0); err != nil {
		return err
	}
	args := d.RemainingArgs()
	if len(args) == 0 {
		return d.ArgErr()
	}
	*dst = args
	return nil
}

// Flag sets dst for a subdirective that takes no argument.
func Flag(d *caddyfile.Dispenser, dst *bool) error {
	if err := once(d, *dst); err != nil {
		return err
	}
	if d.NextArg() {
		return d.ArgErr()
	}
	*dst = true
	return nil
}

// Duration reads the single duration argument (e.g. 5s, 1m) of the current
// subdirective into dst.
func Duration(d *caddyfile.Dispenser, dst *caddy.Duration) error {
	name, s := d.Val(), ""
	if err := once(d, *dst != 0); err != nil {
		return err
	}
	if err := String(d, &s); err != nil {
		return err
	}
	v, err := caddy.ParseDuration(s)
	if err != nil {
		return d.Errf("%s: %q is not a duration such as 5s or 1m: %v", name, s, err)
	}
	*dst = caddy.Duration(v)
	return nil
}

// Int reads the single integer argument of the current subdirective into dst.
func Int(d *caddyfile.Dispenser, dst *int) error {
	name, s := d.Val(), ""
	if err := once(d, *dst != 0); err != nil {
		return err
	}
	if err := String(d, &s); err != nil {
		return err
	}
	v, err := strconv.Atoi(s)
	if err != nil {
		return d.Errf("%s takes a whole number, not %q", name, s)
	}
	*dst = v
	return nil
}

func once(d *caddyfile.Dispenser, set bool) error {
	if set {
		return d.Errf("%s has already been specified", d.Val())
	}
	return nil
}

// Map reads the key and the value that the current subdirective (such as
// metadata) takes into dst, once per key. example completes "<name> takes a
// key and a value, e.g. ".
func Map(d *caddyfile.Dispenser, dst *map[string]string, example string) error {
	name := d.Val()
	var k, v string
	if !d.Args(&k, &v) || d.NextArg() {
		return d.Errf("%s takes a key and a value, e.g. %s", name, example)
	}
	if _, dup := (*dst)[k]; dup {
		return d.Errf("%s %q has already been specified", name, k)
	}
	if *dst == nil {
		*dst = make(map[string]string)
	}
	(*dst)[k] = v
	return nil
}

// Unknown is the error for a subdirective that the block does not know.
func Unknown(d *caddyfile.Dispenser, block string, known ...string) error {
	return d.Errf("unrecognized %s option '%s' (known options: %v)", block, d.Val(), known)
}

// NamedBlocks parses a global option that configures the app appName with
// connections in blocks named by kind, such as
//
//	k8s {
//		cluster <name> {
//			...
//		}
//	}
//
// into *blocks, a map field of app. When the option appears more than once,
// existing holds what the earlier ones gave, and the blocks are added to
// theirs; a name given twice is refused, and so is one that breaks
// upstreams.CheckName. example completes "<kind> needs a name, e.g. ".
// option reads one subdirective of a block into its connection, ok false
// for one it does not know; known lists those it does, for the error. Each
// connection is checked with its Validate. It returns the app for
// httpcaddyfile.RegisterGlobalOption.
func NamedBlocks[T interface{ Validate() error }](d *caddyfile.Dispenser, existing any, appName string, app any,
	blocks *map[string]*T, kind, example string, known []string, option func(*T, *caddyfile.Dispenser) (ok bool, err error),
) (any, error) {
	if prev, ok := existing.(httpcaddyfile.App); ok {
		if err := json.Unmarshal(prev.Value, app); err != nil {
			return nil, err
		}
	}
	d.Next() // consume option name
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	for d.NextBlock(0) {
		if d.Val() != kind {
			return nil, Unknown(d, appName+" global", kind)
		}
		if !d.NextArg() {
			return nil, d.Errf("%s needs a name, e.g. %s", kind, example)
		}
		name := d.Val()
		if d.NextArg() {
			return nil, d.ArgErr()
		}
		if _, dup := (*blocks)[name]; dup {
			return nil, d.Errf("%s %q has already been specified", kind, name)
		}
		if err := upstreams.CheckName(kind, name); err != nil {
			return nil, d.Err(err.Error())
		}
		c := new(T)
		for d.NextBlock(1) {
			ok, err := option(c, d)
			if !ok {
				return nil, Unknown(d, appName+" "+kind, known...)
			}
			if err != nil {
				return nil, err
			}
		}
		if err := (*c).Validate(); err != nil {
			return nil, d.Errf("%s %q: %v", kind, name, err)
		}
		if *blocks == nil {
			*blocks = make(map[string]*T)
		}
		(*blocks)[name] = c
	}
	return httpcaddyfile.App{Name: appName, Value: caddyconfig.JSON(app, nil)}, nil
}

// Source reads the tokens of `dynamic <source> <arg> { … }`: the one
// argument into arg (without one, the error is need, which shows how to
// write it), each subdirective through option, which reports false for one
// it does not know (the error then lists known), and last checks the
// result with validate, so that what can be known before placeholders are
// replaced is reported at adapt time.
func Source(d *caddyfile.Dispenser, source string, arg *string, need string,
	option func(*caddyfile.Dispenser) (bool, error), validate func() error, known ...string,
) error {
	d.Next() // the source's name
	if !d.NextArg() {
		return d.Err(need)
	}
	*arg = d.Val()
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		ok, err := option(d)
		if !ok {
			return Unknown(d, source, known...)
		}
		if err != nil {
			return err
		}
	}
	if err := validate(); err != nil {
		return d.Err(err.Error())
	}
	return nil
}

// TLSOptions are the subdirectives of an upstreams.ClientTLS.
var TLSOptions = []string{"tls", "ca_file", "cert_file", "key_file", "tls_server_name"}

// TLS reads one subdirective of a connection's TLS settings into t; ok is
// false for any other subdirective.
func TLS(d *caddyfile.Dispenser, t *upstreams.ClientTLS) (ok bool, err error) {
	switch d.Val() {
	case "tls":
		return true, Flag(d, &t.TLS)
	case "ca_file":
		return true, String(d, &t.CAFile)
	case "cert_file":
		return true, String(d, &t.CertFile)
	case "key_file":
		return true, String(d, &t.KeyFile)
	case "tls_server_name":
		return true, String(d, &t.TLSServerName)
	}
	return false, nil
}
